"""Darknet-19 / Darknet-53 ImageNet classification (paper 001 sec. 4.1; the trunks the
detectors are pretrained from): networks, augmentation, the training chain, exact multi-rank
validation, classifier files, and the recipe."""
