"""Face datasets (paper Section 4.1): UTKFace, FairFace and Diversity in Faces, mixed freely.

One registered dataset, ``faces``, reads any combination of *sources* in their published
on-disk formats, gives every face the attributes ``age``, ``gender``, ``skin``, ``race`` and
``source``, and builds an experiment from ``data.options``: which attribute is the label,
which attributes define the groups (their intersection), how skin-colour groups are defined,
and how many training / test examples each group gets. See ``docs/faces.md``.

Formats (``sources[*].format``; default folder under ``data_dir`` in brackets):

- ``utkface`` [``UTKFace``]: the aligned-and-cropped set, files
  ``[age]_[gender]_[race]_[datetime].jpg.chip.jpg`` anywhere below the folder (gender 0 male,
  1 female; race 0 White, 1 Black, 2 Asian, 3 Indian, 4 Others). The chip is the face; it is
  used whole (centre square).
- ``utkface-wild`` [``UTKface_inthewild``]: the in-the-wild images ``[age]_[gender]_[race]_
  [datetime].jpg`` (``part1/`` .. ``part3/``) and ``landmark_list_part*.txt`` (per line: the
  file name, then 68 x y pairs); the face box is the landmarks' bounding box.
- ``fairface`` [``fairface``]: ``fairface_label_train.csv`` and ``fairface_label_val.csv``
  (columns ``file, age, gender, race[, service_test]``; the val split becomes test data) and
  the image folders they name. Images are already face crops; used whole.
- ``dif`` [``DiF``]: a metadata CSV with one row per face (image URL or local file, face box,
  optional landmarks, ITA, age, gender; column names configurable, see :data:`DIF_COLUMNS`)
  and the images the researcher holds locally under ``images/``, named as in the URL.

Malformed entries (UTKFace's names with a missing field, a stray space, a missing dot;
unparsable CSV values; images that are not on disk) are skipped, never guessed: each source
counts what it skipped and why, a :class:`MalformedFacesWarning` says how many, and the
counts are kept in ``dataset.info["sources"]``.

Cropping: the face box is made square (side = the larger of its width and height), enlarged by
``margin`` (0.4: 40% more in every dimension, as the paper) about its centre, cut out
(regions outside the image are black) and scaled to ``image_size`` (80) pixels; the model sees
a ``crop_size`` (64) window: random rotation / position / flip in training, the centre at test
time (:class:`~disparate.data.images.ImageGroupedDataset`). Decoding and caching are the image
store's (:mod:`disparate.data.image_store`), shared with iNaturalist.

One module per job: :mod:`.records` (what a source yields), :mod:`.utkface`,
:mod:`.fairface`, :mod:`.dif` (one per source format), :mod:`.sources` (which sources),
:mod:`.groups` (age bins, skin-colour rules), :mod:`.selection` (the train / test draws) and
:mod:`.dataset` (the registered builder).
"""

from disparate.data.faces.dataset import build_faces
from disparate.data.faces.dif import DIF_COLUMNS, scan_dif
from disparate.data.faces.fairface import scan_fairface
from disparate.data.faces.groups import SkinRule, age_bin_names, parse_skin_groups
from disparate.data.faces.records import (
    ATTRIBUTES,
    FAIRFACE_AGE_BINS,
    FAIRFACE_RACES,
    FORMATS,
    GENDERS,
    ITA_SIX,
    UTKFACE_RACES,
    FaceRecord,
    FaceScanReport,
    MalformedFacesWarning,
)
from disparate.data.faces.sources import scan_source
from disparate.data.faces.utkface import (
    landmark_box,
    parse_utkface_name,
    scan_utkface,
    scan_utkface_wild,
)
from disparate.data.image_store import ScanReport, crop_box
from disparate.data.image_store import load_image as load_face_image

__all__ = [
    "ATTRIBUTES",
    "DIF_COLUMNS",
    "FAIRFACE_AGE_BINS",
    "FAIRFACE_RACES",
    "FORMATS",
    "GENDERS",
    "ITA_SIX",
    "UTKFACE_RACES",
    "FaceRecord",
    "FaceScanReport",
    "MalformedFacesWarning",
    "ScanReport",
    "SkinRule",
    "age_bin_names",
    "build_faces",
    "crop_box",
    "landmark_box",
    "load_face_image",
    "parse_skin_groups",
    "parse_utkface_name",
    "scan_dif",
    "scan_fairface",
    "scan_source",
    "scan_utkface",
    "scan_utkface_wild",
]
