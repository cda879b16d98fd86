"""Paper 002: CycleGAN (Zhu et al. 2017) trained data-parallel with ChainerMN, FID, and the
person-detection counts of its Table 2.

Modules: :mod:`networks` (generator, PatchGAN, instance norm), :mod:`losses` (LSGAN, cycle,
identity), :mod:`image_pool` (history of generated images), :mod:`updater` (one CycleGAN step,
learning-rate rules), :mod:`fid` (Frechet distance), :mod:`inception` (Inception-v3 for FID
with converted weights), :mod:`features` (the default, download-free feature extractor),
:mod:`data` (unpaired folders, synthetic domains), :mod:`person_crops` (the paper's crops).
Images given to the networks are float32 ``(N, 3, H, W)`` RGB in ``[-1, 1]``.
"""
