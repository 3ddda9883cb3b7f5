"""One training step of the demo's network (the built-in dataset's options,
batch 64 at 32 px, bfloat16 autocast as the CPU trains): seconds a step;
`cl` in channels_last; `--profile` adds torch's operator table. Run from the
project root after `diffmine demo` (it reads the demo's images)."""
import time, sys, glob
import torch, polars as pl
from diffmine_assets.mining.config.project import load_config
from diffmine_assets.mining.denoisers.registry import new_denoiser
from diffmine_assets.mining.tensors import model_space
cfg = load_config(); spec = cfg.dataset("builtin"); opts = spec.training
imgs = pl.read_parquet(glob.glob("data/lake/images/**/*.parquet", recursive=True))
tr = imgs.filter(pl.col("split") == "train")
labels = sorted(imgs["label_key"].unique().to_list())
torch.manual_seed(0)
model = new_denoiser(opts, labels, spec.options.resolution)
x = model_space(model, tr["path"].to_list()); c = model.condition_ids(tr["label_key"].to_list())
opt = torch.optim.AdamW(model.module.parameters(), lr=1e-3)
def step(i):
    g = torch.Generator().manual_seed(i)
    idx = torch.randint(0, len(x), (64,), generator=g)
    x0 = x[idx]; cond = c[idx]
    t = torch.randint(0, 1000, (64,), generator=g)
    eps = torch.randn(x0.shape, generator=g)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        pred = model.predict(model.add_noise(x0, eps, t), t, cond)
    loss = ((pred.float() - eps) ** 2).mean()
    opt.zero_grad(); loss.backward(); opt.step()
if 'cl' in sys.argv: model.module.to(memory_format=torch.channels_last); x = x.contiguous(memory_format=torch.channels_last)
for i in range(3): step(i)
t0=time.perf_counter()
for i in range(10): step(i)
print("bf16 step", (time.perf_counter()-t0)/10)
if '--profile' not in sys.argv: sys.exit(0)
from torch.profiler import profile, ProfilerActivity
with profile(activities=[ProfilerActivity.CPU]) as prof:
    for i in range(5): step(i)
print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=25))
