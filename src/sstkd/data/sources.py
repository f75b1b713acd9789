"""Readers for segmentation datasets in their official on-disk layouts. Nothing is downloaded.

Each layout is a :class:`SourceLayout` that lists ``(sample_id, split, image, mask)`` records under a root folder
and knows how to turn the stored mask values into training ids (a 256-entry look-up table; 255 = ignore).
Values that the layout does not define map to :data:`UNKNOWN_LABEL`, which validation reports as an error.

========== ==================================================================================================
layout     files under ``root``
========== ==================================================================================================
generic    ``images/<id>.<ext>``, ``masks/<id>.png`` (class ids, 255 ignore), ``splits/<split>.txt``,
           ``classes.json`` (``{"classes": [...]}``) or ``classes.txt`` (one name a line)
cityscapes ``leftImg8bit/<split>/<city>/<city>_<seq>_<frame>_leftImg8bit.png``,
           ``gtFine/<split>/<city>/<city>_<seq>_<frame>_gtFine_labelIds.png`` (34 label ids → 19 train ids,
           the official definitions of cityscapesScripts' ``labels.py``)
voc        ``JPEGImages/<id>.jpg``, ``SegmentationClass/<id>.png`` (palette indices, 255 border),
           ``ImageSets/Segmentation/{train,val}.txt``; optional SBD ``SegmentationClassAug/`` + ``train_aug.txt``
ade20k     ``ADEChallengeData2016/images/{training,validation}/*.jpg`` and ``annotations/...png``
           (0 = other → ignore, 1..150 → 0..149); names from ``objectInfo150.txt``/``.csv`` or built in
camvid     ``{train,val,test}/*.png`` and ``{train,val,test}annot/*.png`` (11 classes, 11 = void → ignore)
========== ==================================================================================================
"""

from __future__ import annotations

import csv
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from sstkd.errors import MalformedFileError, MissingFileError

log = logging.getLogger(__name__)

IGNORE_INDEX = 255
UNKNOWN_LABEL = 254  # a stored value the layout does not define; validation rejects it
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


@dataclass(frozen=True)
class SampleRecord:
    sample_id: str
    split: str
    image_path: str  # relative to the source root
    mask_path: str | None  # None: the image has no mask (reported by validation)


@dataclass
class SourceLayout:
    """A dataset on disk: where it is, what its classes are and how its masks map to training ids."""

    name: str
    root: Path
    classes: list[str]
    label_lut: np.ndarray  # (256,) uint8: stored mask value -> training id, IGNORE_INDEX or UNKNOWN_LABEL
    records: list[SampleRecord] = field(default_factory=list)
    orphan_masks: list[str] = field(default_factory=list)  # masks with no image (reported by validation)
    problems: list[str] = field(default_factory=list)  # found while scanning (e.g. a listed id with no image)
    hflip_safe: bool = True  # False where mirroring changes a class (orientation-defined classes)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def info(self) -> dict:
        return {
            "layout": self.name,
            "root": str(self.root),
            "classes": list(self.classes),
            "num_classes": self.num_classes,
            "ignore_index": IGNORE_INDEX,
            "label_lut": self.label_lut.tolist(),
            "hflip_safe": self.hflip_safe,
        }


def _lut(mapping: dict[int, int], default: int = UNKNOWN_LABEL) -> np.ndarray:
    lut = np.full(256, default, dtype=np.uint8)
    for stored, train_id in mapping.items():
        lut[stored] = train_id
    return lut


def _require_dir(path: Path, what: str) -> Path:
    if not path.is_dir():
        raise MissingFileError(f"{what}: no folder", path, "check the dataset's layout in the README's "
                               "real-dataset section (or choose the env of its layout)")
    return path


def _files_by_stem(folder: Path, suffixes: tuple[str, ...]) -> dict[str, Path]:
    return {p.stem: p for p in sorted(folder.iterdir()) if p.suffix.lower() in suffixes}


def _pair_records(
    root: Path, image_dir: Path, mask_dir: Path, split: str, ids: list[str] | None = None, listed_in: Path | None = None
) -> tuple[list[SampleRecord], list[str], list[str]]:
    """``(records, orphan masks, problems)`` of one split.

    ``ids`` (from the split file ``listed_in``) selects the samples; ``None`` takes every image of ``image_dir``.
    Every listed id without an image is a problem (all of them, not just the first). A mask is an orphan only
    when no image in ``image_dir`` has its stem: a mask whose image a split does not list is merely unused.
    """
    images = _files_by_stem(image_dir, IMAGE_SUFFIXES)
    masks = _files_by_stem(mask_dir, (".png",))
    wanted = ids if ids is not None else sorted(images)
    records, problems = [], []
    source = listed_in if listed_in is not None else f"the {split} split"
    for sample_id in wanted:
        image = images.get(sample_id)
        if image is None:
            problems.append(f"{source}: lists {sample_id!r} but {image_dir} has no image with that name")
            continue
        mask = masks.get(sample_id)
        records.append(
            SampleRecord(
                sample_id,
                split,
                str(image.relative_to(root)),
                str(mask.relative_to(root)) if mask is not None else None,
            )
        )
    return records, _orphan_masks(root, images, masks), problems


def _orphan_masks(root: Path, images: dict[str, Path], masks: dict[str, Path]) -> list[str]:
    return [str(masks[stem].relative_to(root)) for stem in sorted(set(masks) - set(images))]


def _read_split_list(path: Path) -> list[str]:
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]


# ----------------------------------------------------------------------------------------------- generic
CLASSES_JSON_FIX = 'write it as {"classes": ["background", "road", ...]} (names in class-id order)'


def _read_classes_json(path: Path) -> dict:
    try:
        described = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise MalformedFileError(f"not valid JSON ({error.msg}, column {error.colno})", path, CLASSES_JSON_FIX,
                                 line=error.lineno) from None
    if not isinstance(described, dict) or "classes" not in described:
        raise MalformedFileError('no "classes" list', path, CLASSES_JSON_FIX)
    names = described["classes"]
    if not isinstance(names, list) or not names or not all(isinstance(name, str) and name for name in names):
        raise MalformedFileError('"classes" must be a non-empty list of names', path, CLASSES_JSON_FIX)
    _refuse_repeated_names(names, path, None)
    return described


def _read_classes_txt(path: Path) -> list[str]:
    numbered = [(number, line.strip()) for number, line in enumerate(path.read_text().splitlines(), 1)
                if line.strip()]
    if not numbered:
        raise MalformedFileError("no class names", path, "write one class name a line, in class-id order")
    _refuse_repeated_names([name for _, name in numbered], path, [number for number, _ in numbered])
    return [name for _, name in numbered]


def _refuse_repeated_names(names: list[str], path: Path, line_numbers: list[int] | None) -> None:
    seen: dict[str, int] = {}
    for index, name in enumerate(names):
        if name in seen:
            where = None if line_numbers is None else line_numbers[index]
            raise MalformedFileError(f"class {name!r} is named twice (class ids {seen[name]} and {index})", path,
                                     "give each class id its own name", line=where)
        seen[name] = index


def read_generic(root: str | Path, classes: list[str] | None = None) -> SourceLayout:
    root = Path(root)
    image_dir = _require_dir(root / "images", "generic layout")
    mask_dir = _require_dir(root / "masks", "generic layout")
    split_dir = _require_dir(root / "splits", "generic layout")
    described = _read_classes_json(root / "classes.json") if (root / "classes.json").exists() else {}
    if classes is None:
        if described:
            classes = list(described["classes"])
        elif (root / "classes.txt").exists():
            classes = _read_classes_txt(root / "classes.txt")
        else:
            raise MissingFileError("generic layout: no classes.json or classes.txt", root,
                                   'write classes.json ({"classes": ["background", "road", ...]}, in class-id order) '
                                   "or classes.txt (one name a line)")
    records: list[SampleRecord] = []
    problems: list[str] = []
    for split_file in sorted(split_dir.glob("*.txt")):
        split_records, _, split_problems = _pair_records(root, image_dir, mask_dir, split_file.stem,
                                                         _read_split_list(split_file), split_file)
        records += split_records
        problems += split_problems
    orphans = _orphan_masks(root, _files_by_stem(image_dir, IMAGE_SUFFIXES), _files_by_stem(mask_dir, (".png",)))
    return SourceLayout("generic", root, classes, _lut({i: i for i in range(len(classes))} | {255: IGNORE_INDEX}),
                        records, orphans, problems, hflip_safe=bool(described.get("hflip_safe", True)))


# ----------------------------------------------------------------------------------------------- cityscapes
# The official definitions (cityscapesScripts' helpers/labels.py): the 19 evaluated classes in trainId order, and
# labelId -> trainId for them; every other label id 0..33 (void, and classes not evaluated) is ignored. Kept here
# rather than imported: the cityscapesscripts package pins the `typing` backport, whose only release refuses
# Python >= 3.5 under pip, so the lock would not install.
CITYSCAPES_CLASSES = [
    "road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign", "vegetation",
    "terrain", "sky", "person", "rider", "car", "truck", "bus", "train", "motorcycle", "bicycle",
]  # fmt: skip
CITYSCAPES_LABEL_TO_TRAIN = {
    7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9, 23: 10, 24: 11, 25: 12, 26: 13, 27: 14,
    28: 15, 31: 16, 32: 17, 33: 18,
}  # fmt: skip
CITYSCAPES_LABEL_IDS = list(range(34))


def read_cityscapes(root: str | Path, splits: tuple[str, ...] = ("train", "val", "test")) -> SourceLayout:
    root = Path(root)
    image_root = _require_dir(root / "leftImg8bit", "cityscapes layout")
    label_root = _require_dir(root / "gtFine", "cityscapes layout")
    records: list[SampleRecord] = []
    orphans: list[str] = []
    for split in splits:
        if not (image_root / split).is_dir():
            continue
        for image in sorted((image_root / split).glob("*/*_leftImg8bit.png")):
            stem = image.name[: -len("_leftImg8bit.png")]
            mask = label_root / split / image.parent.name / f"{stem}_gtFine_labelIds.png"
            records.append(
                SampleRecord(stem, split, str(image.relative_to(root)),
                             str(mask.relative_to(root)) if mask.exists() else None)
            )
        image_stems = {r.sample_id for r in records if r.split == split}
        for mask in sorted((label_root / split).glob("*/*_gtFine_labelIds.png")):
            if mask.name[: -len("_gtFine_labelIds.png")] not in image_stems:
                orphans.append(str(mask.relative_to(root)))
    mapping = {label_id: IGNORE_INDEX for label_id in CITYSCAPES_LABEL_IDS} | CITYSCAPES_LABEL_TO_TRAIN
    return SourceLayout("cityscapes", root, list(CITYSCAPES_CLASSES), _lut(mapping), records, orphans)


# ----------------------------------------------------------------------------------------------- voc
VOC_CLASSES = [
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
]  # fmt: skip


def voc_palette() -> np.ndarray:
    """The 256-colour Pascal VOC palette ``(256, 3)`` uint8 (bit-interleaved label colours)."""
    palette = np.zeros((256, 3), dtype=np.uint8)
    for label in range(256):
        value, r, g, b = label, 0, 0, 0
        for bit in range(8):
            r |= ((value >> 0) & 1) << (7 - bit)
            g |= ((value >> 1) & 1) << (7 - bit)
            b |= ((value >> 2) & 1) << (7 - bit)
            value >>= 3
        palette[label] = (r, g, b)
    return palette


def read_voc(root: str | Path, use_sbd_aug: bool = False) -> SourceLayout:
    """VOC 2012 masks are palette PNGs whose *indices* are the class ids (read without RGB conversion)."""
    root = Path(root)
    image_dir = _require_dir(root / "JPEGImages", "voc layout")
    set_dir = _require_dir(root / "ImageSets" / "Segmentation", "voc layout")
    records: list[SampleRecord] = []
    problems: list[str] = []
    for split in ("train", "val", "test"):
        list_file = set_dir / f"{split}.txt"
        mask_dir = root / "SegmentationClass"
        if split == "train" and use_sbd_aug:
            list_file = set_dir / "train_aug.txt"
            mask_dir = root / "SegmentationClassAug"
            if not list_file.exists():
                raise MissingFileError(
                    f"voc layout: raw_dataset.options.use_sbd_aug is true (the papers' VOC aug training set), but "
                    f"{list_file} does not exist. Add SBD's SegmentationClassAug/ and train_aug.txt, or turn it off "
                    f"with `--params use_sbd_aug=false` (raw_dataset.options.use_sbd_aug) to train on VOC's own "
                    f"train split")
        if not list_file.exists():
            continue
        # VOC's mask folders hold only the segmentation subset of JPEGImages: no orphan check here
        split_records, _, split_problems = _pair_records(root, image_dir, _require_dir(mask_dir, "voc layout"), split,
                                                         _read_split_list(list_file), list_file)
        records += split_records
        problems += split_problems
    return SourceLayout("voc", root, list(VOC_CLASSES), _lut({i: i for i in range(21)} | {255: IGNORE_INDEX}),
                        records, [], problems)


# ----------------------------------------------------------------------------------------------- ade20k
# The 150 classes of the scene-parsing benchmark (ADEChallengeData2016), in index order 1..150, first synonym of
# each: used when the dataset folder has no objectInfo150 file.
ADE20K_CLASSES = [
    "wall", "building", "sky", "floor", "tree", "ceiling", "road", "bed", "windowpane", "grass", "cabinet",
    "sidewalk", "person", "earth", "door", "table", "mountain", "plant", "curtain", "chair", "car", "water",
    "painting", "sofa", "shelf", "house", "sea", "mirror", "rug", "field", "armchair", "seat", "fence", "desk",
    "rock", "wardrobe", "lamp", "bathtub", "railing", "cushion", "base", "box", "column", "signboard",
    "chest of drawers", "counter", "sand", "sink", "skyscraper", "fireplace", "refrigerator", "grandstand", "path",
    "stairs", "runway", "case", "pool table", "pillow", "screen door", "stairway", "river", "bridge", "bookcase",
    "blind", "coffee table", "toilet", "flower", "book", "hill", "bench", "countertop", "stove", "palm",
    "kitchen island", "computer", "swivel chair", "boat", "bar", "arcade machine", "hovel", "bus", "towel", "light",
    "truck", "tower", "chandelier", "awning", "streetlight", "booth", "television receiver", "airplane",
    "dirt track", "apparel", "pole", "land", "bannister", "escalator", "ottoman", "bottle", "buffet", "poster",
    "stage", "van", "ship", "fountain", "conveyer belt", "canopy", "washer", "plaything", "swimming pool", "stool",
    "barrel", "basket", "waterfall", "tent", "bag", "minibike", "cradle", "oven", "ball", "food", "step", "tank",
    "trade name", "microwave", "pot", "animal", "bicycle", "lake", "dishwasher", "screen", "blanket", "sculpture",
    "hood", "sconce", "vase", "traffic light", "tray", "ashcan", "fan", "pier", "crt screen", "plate", "monitor",
    "bulletin board", "shower", "radiator", "glass", "clock", "flag",
]  # fmt: skip
ADE20K_NUM_CLASSES = 150
_ADE20K_NAME_FILES = (("objectInfo150.txt", "\t", ","), ("objectInfo150.csv", ",", ";"))  # file, separator, synonyms


def read_ade20k_classes(path: Path) -> list[str]:
    """Class names from an official ``objectInfo150`` file, first synonym of each, in index order.

    ``.txt`` (the release): tab-separated ``Idx Ratio Train Val Name``, synonyms split by ``,``
    (``building, edifice``); ``.csv`` (the devkit): comma-separated, synonyms split by ``;`` (``building;edifice``).
    A malformed file raises ``ValueError`` naming it.
    """
    separator, synonyms = next((sep, syn) for name, sep, syn in _ADE20K_NAME_FILES if name == path.name)
    rows = [row for row in csv.reader(path.read_text().splitlines(), delimiter=separator) if row]
    if not rows or [cell.strip().lower() for cell in rows[0]] != ["idx", "ratio", "train", "val", "name"]:
        raise ValueError(f"{path}: expected the header Idx, Ratio, Train, Val, Name (the official objectInfo150)")
    names: dict[int, str] = {}
    for line, row in enumerate(rows[1:], start=2):
        try:
            index = int(row[0])
            name = row[4].split(synonyms)[0].strip()
        except (ValueError, IndexError):
            raise ValueError(f"{path}, line {line}: expected 5 fields with an integer Idx, got {row}") from None
        if not name or not 1 <= index <= ADE20K_NUM_CLASSES or index in names:
            raise ValueError(f"{path}, line {line}: Idx {index} with name {name!r} is empty, out of 1..150 or repeated")
        names[index] = name
    if sorted(names) != list(range(1, ADE20K_NUM_CLASSES + 1)):
        raise ValueError(f"{path}: lists {len(names)} classes, expected the {ADE20K_NUM_CLASSES} of ADE20K")
    return [names[index] for index in sorted(names)]


def ade20k_classes(root: Path) -> list[str]:
    """Names from ``objectInfo150.txt`` or ``.csv`` in ``root/ADEChallengeData2016`` or ``root``; else built in."""
    for folder in (root / "ADEChallengeData2016", root):
        for name, _, _ in _ADE20K_NAME_FILES:
            if (folder / name).is_file():
                return read_ade20k_classes(folder / name)
    log.info("ade20k: no objectInfo150.txt or objectInfo150.csv under %s; class names come from the built-in "
             "list of the 150 official names", root)
    return list(ADE20K_CLASSES)


def read_ade20k(root: str | Path) -> SourceLayout:
    root = Path(root)
    base = root / "ADEChallengeData2016" if (root / "ADEChallengeData2016").is_dir() else root
    images = _require_dir(base / "images", "ade20k layout")
    annotations = _require_dir(base / "annotations", "ade20k layout")
    records: list[SampleRecord] = []
    orphans: list[str] = []
    for folder, split in (("training", "train"), ("validation", "val")):
        if (images / folder).is_dir():
            split_records, split_orphans, _ = _pair_records(root, images / folder,
                                                            _require_dir(annotations / folder, "ade20k layout"), split)
            records += split_records
            orphans += split_orphans
    return SourceLayout("ade20k", root, ade20k_classes(root), _lut({0: IGNORE_INDEX} | {i: i - 1 for i in range(1, 151)}),
                        records, orphans)


# ----------------------------------------------------------------------------------------------- camvid
CAMVID_CLASSES = [
    "sky", "building", "pole", "road", "pavement", "tree", "signsymbol", "fence", "car", "pedestrian", "bicyclist",
]  # fmt: skip


def read_camvid(root: str | Path) -> SourceLayout:
    root = Path(root)
    records: list[SampleRecord] = []
    orphans: list[str] = []
    for split in ("train", "val", "test"):
        if (root / split).is_dir():
            split_records, split_orphans, _ = _pair_records(root, root / split,
                                                            _require_dir(root / f"{split}annot", "camvid layout"), split)
            records += split_records
            orphans += split_orphans
    if not records:
        raise FileNotFoundError(f"camvid layout: no train/val/test folders under {root}")
    return SourceLayout("camvid", root, list(CAMVID_CLASSES), _lut({i: i for i in range(11)} | {11: IGNORE_INDEX}),
                        records, orphans)


READERS = {
    "generic": read_generic,
    "cityscapes": read_cityscapes,
    "voc": read_voc,
    "ade20k": read_ade20k,
    "camvid": read_camvid,
}


def open_source(layout: str, root: str | Path, **options) -> SourceLayout:
    """Scan ``root`` in the named ``layout`` (one of :data:`READERS`)."""
    try:
        reader = READERS[layout]
    except KeyError:
        raise ValueError(f"data.layout: unknown layout {layout!r}; choose one of {sorted(READERS)}") from None
    if not Path(root).exists():
        raise MissingFileError(f"the {layout} dataset folder does not exist", root,
                               "put the dataset there, or give its folder: --params dataset_root=/path/to/it "
                               "(or SSTKD_DATASET_ROOT)")
    return reader(root, **options)
