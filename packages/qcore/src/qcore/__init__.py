"""Shared plumbing for the paper packages: registry, configs, checkpoints, run directories, benchmarks and CIFAR ResNets."""
