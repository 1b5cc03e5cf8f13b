"""Configuration and file loading: the bottom layer that activities and workers both read."""
