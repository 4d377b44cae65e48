"""channel attention for CNNs"""
