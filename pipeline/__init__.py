"""basewatch: Sentinel imagery change detection for military-base withdrawal activity."""

__version__ = "0.1.0"
