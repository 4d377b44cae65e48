#!/usr/bin/env bash
# Build the wheel and sdist of every workspace package into dist/<package>/ (what CI publishes as artifacts).
set -euo pipefail
cd "$(dirname "$0")/.."
for pyproject in packages/*/pyproject.toml; do
    package="$(basename "$(dirname "$pyproject")")"
    echo "building $package"
    uv build --package "$package" --out-dir "dist/$package"
done
