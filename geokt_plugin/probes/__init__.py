"""Probes: measurements of a network during training that no loss optimises (they only observe).

- :func:`knn_agreement`: how far the k-nearest-neighbour sets of a student's local features match an instructor's.
"""

from .agreement import AGREEMENT_PREFIX, knn_agreement, knn_sets

__all__ = ["AGREEMENT_PREFIX", "knn_agreement", "knn_sets"]
