"""The table-lookup normalisation gives exactly the official formula's float32 values."""
import numpy as np

from densepred.imagenorm import IMAGENET_MEAN, IMAGENET_STD, normalize


def _formula(img: np.ndarray) -> np.ndarray:
    x = img.astype(np.float32) / 255.0
    return ((x - IMAGENET_MEAN) / IMAGENET_STD).transpose(2, 0, 1)


def test_lookup_equals_the_formula_bit_for_bit_on_every_level_and_layout():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (37, 29, 3), dtype=np.uint8)
    img[0, :3] = [[0, 0, 0], [255, 255, 255], [128, 1, 254]]
    for view in (img, img[:, ::-1], img[::2]):  # flipped and strided inputs too
        out = normalize(view)
        assert out.dtype == np.float32 and out.shape == (3,) + view.shape[:2] and out.flags.c_contiguous
        assert np.array_equal(out, _formula(view))
    as_float = img.astype(np.float32)  # other dtypes keep the direct formula
    assert np.array_equal(normalize(as_float), _formula(img))
