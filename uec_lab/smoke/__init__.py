"""The one-GPU smoke test of the GPU path (``run_scripts/gpu/smoke.sh``, docs/gpu.md): tiny policies whose attention
heads the GPU kernels accept (``build``), a toy reward a random policy meets about one time in five (``reward``),
and the checks run on what the two short trainings wrote (``check``)."""
