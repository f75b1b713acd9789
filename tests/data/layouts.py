"""Tiny datasets written in the exact official layouts, for adapter tests."""

from pathlib import Path

import numpy as np
from PIL import Image

from sstkd.data.sources import voc_palette


def rgb(height=12, width=16, seed=0):
    return np.random.default_rng(seed).integers(0, 255, (height, width, 3), dtype=np.uint8)


def save_png(path: Path, array: np.ndarray, mode=None, palette=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(array, mode=mode) if mode else Image.fromarray(array)
    if palette is not None:
        image = image.convert("P") if image.mode != "P" else image
        image.putpalette(palette.ravel().tolist())
    image.save(path)


def make_cityscapes(root: Path) -> dict:
    """leftImg8bit/<split>/<city>/<city>_<seq>_<frame>_leftImg8bit.png + gtFine/..._gtFine_labelIds.png."""
    label_ids = np.array([[7, 8, 26, 0], [33, 24, 1, 11]], dtype=np.uint8).repeat(6, 0).repeat(4, 1)
    for split, city, n in (("train", "aachen", 2), ("val", "frankfurt", 1), ("test", "berlin", 1)):
        for i in range(n):
            stem = f"{city}_{i:06d}_000019"
            save_png(root / "leftImg8bit" / split / city / f"{stem}_leftImg8bit.png", rgb(seed=i))
            save_png(root / "gtFine" / split / city / f"{stem}_gtFine_labelIds.png", label_ids, mode="L")
    return {"label_ids": label_ids}


def make_voc(root: Path) -> None:
    indices = np.array([[0, 15, 255], [20, 1, 0]], dtype=np.uint8).repeat(6, 0).repeat(5, 1)
    ids = {"train": ["2007_000032", "2007_000039"], "val": ["2007_000033"]}
    for split, names in ids.items():
        for name in names:
            (root / "JPEGImages").mkdir(parents=True, exist_ok=True)
            Image.fromarray(rgb(12, 15)).save(root / "JPEGImages" / f"{name}.jpg")
            mask = Image.fromarray(indices, mode="P")
            mask.putpalette(voc_palette().ravel().tolist())
            (root / "SegmentationClass").mkdir(parents=True, exist_ok=True)
            mask.save(root / "SegmentationClass" / f"{name}.png")
        set_dir = root / "ImageSets" / "Segmentation"
        set_dir.mkdir(parents=True, exist_ok=True)
        (set_dir / f"{split}.txt").write_text("\n".join(names) + "\n")


def make_ade20k(root: Path) -> None:
    base = root / "ADEChallengeData2016"
    annotation = np.array([[0, 1, 150, 7]], dtype=np.uint8).repeat(12, 0).repeat(4, 1)
    for folder, n in (("training", 2), ("validation", 1)):
        for i in range(n):
            name = f"ADE_{folder[:5]}_{i:08d}"
            (base / "images" / folder).mkdir(parents=True, exist_ok=True)
            Image.fromarray(rgb()).save(base / "images" / folder / f"{name}.jpg")
            save_png(base / "annotations" / folder / f"{name}.png", annotation, mode="L")


def make_camvid(root: Path) -> None:
    annotation = np.array([[0, 3, 11, 10]], dtype=np.uint8).repeat(12, 0).repeat(4, 1)
    for split, name in (("train", "0001TP_006690"), ("val", "0016E5_07959"), ("test", "Seq05VD_f00000")):
        save_png(root / split / f"{name}.png", rgb())
        save_png(root / f"{split}annot" / f"{name}.png", annotation, mode="L")


def make_generic(root: Path, classes=("a", "b", "c")) -> None:
    mask = np.array([[0, 1, 2, 255]], dtype=np.uint8).repeat(12, 0).repeat(4, 1)
    for split, names in (("train", ["x1", "x2"]), ("val", ["y1"]), ("test", ["z1"])):
        for name in names:
            save_png(root / "images" / f"{name}.png", rgb())
            save_png(root / "masks" / f"{name}.png", mask, mode="L")
        (root / "splits").mkdir(parents=True, exist_ok=True)
        (root / "splits" / f"{split}.txt").write_text("\n".join(names) + "\n")
    (root / "classes.txt").write_text("\n".join(classes) + "\n")


def write_ade20k_object_info(folder: Path, kind: str = "txt", names=None) -> Path:
    """objectInfo150 as released: ``.txt`` tab-separated with ``,`` synonyms, ``.csv`` with ``;`` synonyms."""
    names = names or [("wall",), ("building", "edifice"), *[(f"class {i}", f"alias {i}") for i in range(3, 151)]]
    separator, synonyms = ("\t", ", ") if kind == "txt" else (",", ";")
    lines = [separator.join(["Idx", "Ratio", "Train", "Val", "Name"])]
    lines += [separator.join([str(i), "0.0100", "100", "10", synonyms.join(n)]) for i, n in enumerate(names, start=1)]
    path = folder / f"objectInfo150.{kind}"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path


def _scene(height: int, width: int, labels: list[int], rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A background label with a few rectangles of other labels; each label has its own colour (so a network can
    learn it), plus noise."""
    mask = np.full((height, width), labels[0], np.uint8)
    for label in rng.choice(labels[1:], size=3):
        top, left = rng.integers(0, height - 4), rng.integers(0, width - 4)
        mask[top:top + rng.integers(4, height // 2 + 5), left:left + rng.integers(4, width // 2 + 5)] = label
    colours = np.random.default_rng(7).integers(0, 255, (256, 3))
    image = colours[mask] + rng.normal(0, 12, (height, width, 3))
    return np.clip(image, 0, 255).astype(np.uint8), mask


def mixed_sizes(count: int, seed: int = 0) -> list[tuple[int, int]]:
    """``count`` (height, width) of different sizes and aspects (portrait, landscape, square), 24..80 px, a few
    repeated (real datasets have many images of their commonest size)."""
    rng = np.random.default_rng(seed)
    sizes = [(int(rng.integers(24, 81)), int(rng.integers(24, 81))) for _ in range(count)]
    return [sizes[0] if i % 4 == 0 else size for i, size in enumerate(sizes)]


def make_voc_mixed(root: Path, counts=(("train", 24), ("val", 12))) -> None:
    """VOC 2012's layout with images of their own sizes (JPEG images, palette masks with the 255 border)."""
    set_dir = root / "ImageSets" / "Segmentation"
    set_dir.mkdir(parents=True, exist_ok=True)
    for offset, (split, count) in enumerate(counts):
        names = []
        for i, (height, width) in enumerate(mixed_sizes(count, seed=offset)):
            name = f"2008_{offset:02d}{i:04d}"
            image, mask = _scene(height, width, [0, 1, 8, 15], np.random.default_rng([offset, i]))
            mask[0, :] = 255  # VOC's object borders are 255 (ignored)
            (root / "JPEGImages").mkdir(parents=True, exist_ok=True)
            Image.fromarray(image).save(root / "JPEGImages" / f"{name}.jpg", quality=95)
            save_png(root / "SegmentationClass" / f"{name}.png", mask, mode="P", palette=voc_palette())
            names.append(name)
        (set_dir / f"{split}.txt").write_text("\n".join(names) + "\n")


def make_ade20k_mixed(root: Path, counts=(("training", 24), ("validation", 12))) -> None:
    """ADEChallengeData2016's layout with images of their own sizes (annotation 0 = other, ignored)."""
    base = root / "ADEChallengeData2016"
    for offset, (folder, count) in enumerate(counts):
        for i, (height, width) in enumerate(mixed_sizes(count, seed=10 + offset)):
            name = f"ADE_{folder[:5]}_{i:08d}"
            image, mask = _scene(height, width, [1, 0, 3, 150], np.random.default_rng([10 + offset, i]))
            (base / "images" / folder).mkdir(parents=True, exist_ok=True)
            Image.fromarray(image).save(base / "images" / folder / f"{name}.jpg", quality=95)
            save_png(base / "annotations" / folder / f"{name}.png", mask, mode="L")
