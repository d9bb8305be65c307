"""disparate: differentially private training and its disparate impact on groups."""

__version__ = "0.1.0"
