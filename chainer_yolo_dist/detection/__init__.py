"""YOLOv2 / YOLOv3 detection (papers 000 and 001): networks, losses, augmentation, multi-scale
training, VOC evaluation, the trunk transfer from Darknet classifiers, and the recipe."""
