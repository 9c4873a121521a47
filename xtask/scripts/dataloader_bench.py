"""PyTorch side of `cargo xtask bench train`'s data-pipeline comparison.

Decodes image-folder JPEGs and makes two SimCLR views per image (random resized crop 0.2-1, h/v
flips, quarter turn p=0.5, colour jitter p=0.8, grayscale p=0.2, Gaussian blur p=0.5), in a
DataLoader with N worker processes, no caching. Prints source images/s (each with both views) as the
last line, the same unit as `rsim bench data`.
Usage: python dataloader_bench.py DATA_DIR [images=4096] [batch=128] [size=64] [workers=2]"""
import os, sys, time
import torch
import torchvision.transforms.v2 as T
from torchvision.io import decode_image, read_file, ImageReadMode

root = sys.argv[1]
images = int(sys.argv[2]) if len(sys.argv) > 2 else 4096
batch = int(sys.argv[3]) if len(sys.argv) > 3 else 128
size = int(sys.argv[4]) if len(sys.argv) > 4 else 64
workers = int(sys.argv[5]) if len(sys.argv) > 5 else 2

files = []
for c in sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d))):
    files += [os.path.join(root, c, f) for f in sorted(os.listdir(os.path.join(root, c)))]

quarter = T.RandomApply([T.RandomChoice([T.RandomRotation((a, a)) for a in (90, 180, 270)])], p=0.5)
view = T.Compose([
    T.RandomResizedCrop(size, scale=(0.2, 1.0), antialias=True), T.RandomHorizontalFlip(), T.RandomVerticalFlip(),
    quarter, T.RandomApply([T.ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.8), T.RandomGrayscale(p=0.2),
    T.RandomApply([T.GaussianBlur(7, sigma=(0.1, 2.0))], p=0.5), T.ToDtype(torch.float32, scale=True),
    T.Normalize([0.5] * 3, [0.5] * 3)])

class Views(torch.utils.data.Dataset):
    def __len__(self):
        return len(files)
    def __getitem__(self, i):
        img = decode_image(read_file(files[i]), mode=ImageReadMode.RGB)
        return view(img), view(img)

torch.set_num_threads(1)
dl = torch.utils.data.DataLoader(Views(), batch_size=batch, shuffle=True, num_workers=workers, drop_last=True,
                                 persistent_workers=workers > 0)
it = iter(dl)
next(it)  # worker start-up is not counted
done, t0 = 0, time.perf_counter()
while done < images:
    try:
        a, b = next(it)
    except StopIteration:
        it = iter(dl); continue
    done += a.shape[0]
secs = time.perf_counter() - t0
print(f"torch {torch.__version__} DataLoader workers {workers}: {done} images x 2 views in {secs:.1f}s")
print(f"{done / secs:.1f} img/s")
