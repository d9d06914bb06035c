"""Training LatentSync: StableSyncNet, then the UNet in stage 1 (reconstruction) and stage 2 (sync, LPIPS, TREPA).

Modules, leaves first: ``config`` (typed configs read from the YAML files in ``configs/``), ``data`` (datasets over
the data toolchain's file lists), ``losses`` (small pure loss functions), ``models`` (frozen helpers: VAE decode with
gradients, loaders of the auxiliary networks), ``syncnet_trainer`` / ``unet_trainer`` (the loops, on
``accelerate``), ``__main__`` (``python -m latentsync.training syncnet|unet CONFIG [--resume]``). Importing this
package loads nothing heavy.
"""
