"""Model code of the recsys platform: data loading, model families, and the `python -m models.<step>` jobs.

Jobs (each prints JSON lines on stdout and ends with a `{"event": "result", ...}` or `{"event": "error", ...}` line):

    python -m models.train     --data-dir D --out-dir O [--config-json '{...}'] [--resume CKPT] [--supervisor-pid PID]
    torchrun --standalone --nproc_per_node=2 -m models.train ...   (same arguments, DDP over gloo)
    python -m models.evaluate  --data-dir D --model O/model.pt --out report.json [--k 10]
    python -m models.export    --model O/model.pt --out model.onnx [--top-k 100] [--tolerance 1e-4]

Run them from the repository root with OMP_NUM_THREADS=1 (two cores; see design notes, section 6).
"""
