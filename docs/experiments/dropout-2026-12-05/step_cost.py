"""Seconds per training step of the shipped tiny model at 32 px, batch 64, bf16 where native,
with and without dropout, alternating so both see the same machine."""
import time, sys
import torch
from diffmine_assets.mining.denoisers.tiny import TinyDenoiser
from diffmine_assets.mining.precision import autocast, resolve_precision

torch.set_num_threads(2)
labels = [str(i) for i in range(10)]
g = torch.Generator().manual_seed(0)
x0 = torch.randn(64, 3, 32, 32, generator=g)
cond = torch.randint(1, 11, (64,), generator=g)
dtype = resolve_precision("auto")
variants = sys.argv[1:] or ["class:0", "class:0.1", "class:0.3"]
models = {v: TinyDenoiser(labels, 32, channels=(64, 64, 64), patch=2, conditioning=v.split(":")[0], dropout=float(v.split(":")[1])) for v in variants}
opts = {p: torch.optim.AdamW(m.module.parameters(), lr=1e-3) for p, m in models.items()}
times = {p: [] for p in models}
for rnd in range(6):
    for p, m in models.items():
        m.module.train()
        t0 = time.perf_counter()
        for _ in range(10):
            t = torch.randint(0, 1000, (64,), generator=g)
            eps = torch.randn(x0.shape, generator=g)
            with autocast(m.module, dtype):
                pred = m.predict(m.add_noise(x0, eps, t), t, cond)
            loss = ((pred.float() - eps) ** 2).mean()
            opts[p].zero_grad(); loss.backward(); opts[p].step()
        if rnd:
            times[p].append((time.perf_counter() - t0) / 10)
for p, ts in times.items():
    ts.sort()
    print(f"{p}: median {ts[len(ts)//2]:.4f} s/step over {len(ts)} rounds of 10 (min {ts[0]:.4f}, max {ts[-1]:.4f}), precision {dtype}")
