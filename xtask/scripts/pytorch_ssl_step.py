"""PyTorch side of rsim's SSL step benchmark, on CPU or CUDA, for SimCLR, MoCo v2 and BYOL.

Mirrors `rsim bench step`: torchvision backbone without its classifier, heads Linear-BN1d-ReLU-Linear
(SimCLR/MoCo 512->128, BYOL 1024->256 plus a predictor), SGD momentum 0.9 wd 1e-4, two views of a
fixed random batch. MoCo keeps a 4096 queue and a momentum encoder; BYOL an EMA target.
Prints `img/s` (two views count as 2 images per sample) as the last line.
Usage: python pytorch_ssl_step.py METHOD ARCH SIZE BATCH STEPS DEVICE [fp16]"""
import copy, sys, time
import torch, torch.nn as nn, torch.nn.functional as F

try:
    import torchvision
    models = torchvision.models
except ImportError:  # GPU hosts may carry torch alone: a torchvision-equivalent ResNet-18 suffices.
    class Block(nn.Module):
        def __init__(self, i, o, s):
            super().__init__()
            self.conv1, self.bn1 = nn.Conv2d(i, o, 3, s, 1, bias=False), nn.BatchNorm2d(o)
            self.conv2, self.bn2 = nn.Conv2d(o, o, 3, 1, 1, bias=False), nn.BatchNorm2d(o)
            self.down = nn.Sequential(nn.Conv2d(i, o, 1, s, bias=False), nn.BatchNorm2d(o)) if s != 1 or i != o else nn.Identity()
        def forward(self, x):
            y = F.relu(self.bn1(self.conv1(x)))
            return F.relu(self.bn2(self.conv2(y)) + self.down(x))

    class ResNet18(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = nn.Sequential(nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(3, 2, 1))
            chans, layers, i = [64, 128, 256, 512], [], 64
            for k, o in enumerate(chans):
                layers += [Block(i, o, 1 if k == 0 else 2), Block(o, o, 1)]
                i = o
            self.layers = nn.Sequential(*layers)
            self.fc = nn.Linear(512, 1000)
        def forward(self, x):
            return self.fc(torch.flatten(F.adaptive_avg_pool2d(self.layers(self.stem(x)), 1), 1))

    class models:
        resnet18 = ResNet18

method, arch, size, batch, steps, device = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), sys.argv[6]
amp = len(sys.argv) > 7 and sys.argv[7] == "fp16"
torch.manual_seed(0)


def mlp(i, h, o):
    return nn.Sequential(nn.Linear(i, h), nn.BatchNorm1d(h), nn.ReLU(), nn.Linear(h, o))


enc = getattr(models, arch)()
dim = enc.fc.in_features if hasattr(enc, "fc") else enc.classifier[-1].in_features
if hasattr(enc, "fc"):
    enc.fc = nn.Identity()
else:
    enc.classifier = nn.Identity()
hidden, out = (1024, 256) if method == "byol" else (512, 128)
online = nn.Sequential(enc, mlp(dim, hidden, out)).to(device)
pred = mlp(out, hidden, out).to(device) if method == "byol" else None
target = copy.deepcopy(online).requires_grad_(False) if method in ("moco", "byol") else None
queue = F.normalize(torch.randn(4096, out, device=device), dim=1) if method == "moco" else None
params = list(online.parameters()) + (list(pred.parameters()) if pred else [])
opt = torch.optim.SGD(params, lr=0.1, momentum=0.9, weight_decay=1e-4)
scaler = torch.amp.GradScaler(enabled=amp)
x1 = torch.randn(batch, 3, size, size, device=device)
x2 = torch.randn(batch, 3, size, size, device=device)


def loss_fn():
    global queue
    if method == "simclr":
        z = F.normalize(torch.cat([online(x1), online(x2)]), dim=1).float()
        s = z @ z.t() / 0.5
        n = batch
        s.fill_diagonal_(float("-inf"))
        return F.cross_entropy(s, torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(device))
    if method == "moco":
        q = F.normalize(online(x1), dim=1).float()
        with torch.no_grad():
            k = F.normalize(target(x2), dim=1).float()
        logits = torch.cat([(q * k).sum(1, keepdim=True), q @ queue.t()], 1) / 0.2
        l = F.cross_entropy(logits, torch.zeros(batch, dtype=torch.long, device=device))
        queue = torch.cat([k, queue])[:4096]
        return l
    p1, p2 = pred(online(x1)), pred(online(x2))
    with torch.no_grad():
        t1, t2 = target(x1), target(x2)
    cos = lambda a, b: 2 - 2 * F.cosine_similarity(a.float(), b.float(), dim=1).mean()
    return cos(p1, t2) + cos(p2, t1)


times = []
for i in range(steps + 1):
    if device == "cuda":
        torch.cuda.synchronize()
    t = time.perf_counter()
    with torch.autocast(device_type="cuda" if device == "cuda" else "cpu", dtype=torch.float16, enabled=amp):
        loss = loss_fn()
    opt.zero_grad()
    scaler.scale(loss).backward()
    scaler.step(opt)
    scaler.update()
    if target is not None:
        with torch.no_grad():
            for pt, po in zip(target.parameters(), online.parameters()):
                pt.mul_(0.99).add_(po.detach(), alpha=0.01)
    if device == "cuda":
        torch.cuda.synchronize()
    times.append(time.perf_counter() - t)
med = sorted(times[1:])[len(times[1:]) // 2]
print(f"torch {torch.__version__} {device} {method} {arch}@{size} batch {batch} amp={'fp16' if amp else 'none'}: median step {med*1000:.1f} ms")
print(f"{2*batch/med:.1f} img/s")
