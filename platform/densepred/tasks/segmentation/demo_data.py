"""Synthetic street-scene demo dataset written in exact Cityscapes layout and label ids.

``make_seg_demo`` renders simple but varied street scenes (a road running towards a vanishing
point, sidewalks, building facades with windows, parks with trees, poles with signs, lamps and
traffic lights, cars, pedestrians, an ego-vehicle hood, ...) with a pinhole camera, and writes
them exactly like the Cityscapes ``leftImg8bit`` / ``gtFine`` release, so the regular
Cityscapes loader (labelId -> trainId mapping, ignore handling) and the official evaluation run
on it unchanged::

    <out_dir>/
      leftImg8bit/{train,val}/<city>/<city>_<seq:06d>_<frame:06d>_leftImg8bit.png   RGB uint8
      gtFine/{train,val}/<city>/<city>_<seq:06d>_<frame:06d>_gtFine_labelIds.png    uint8 labelIds
      gtFine/{train,val}/<city>/<city>_<seq:06d>_<frame:06d>_gtFine_color.png       RGBA (as Cityscapes)
      gtFine/{train,val}/<city>/<city>_<seq:06d>_<frame:06d>_gtFine_instanceIds.png uint16

Like the real release, no ``*_labelTrainIds.png`` files are written: consumers must map
labelIds to trainIds themselves. Label ids and colours come from
``cityscapesscripts.helpers.labels`` (nothing is hand-copied). ``instanceIds`` follow the
Cityscapes convention: ``labelId * 1000 + k`` for car / person instances, the plain labelId
elsewhere. Train and val use different (fake) cities, as Cityscapes does.

Classes drawn (labelId names): road, sidewalk, building, fence, pole, traffic light, traffic
sign, vegetation, terrain, sky, person, car (12 of the 19 evaluated classes), plus void pixels
that must be ignored: ``ego vehicle`` (a bonnet at the bottom of most images), ``rectification
border`` / ``out of roi`` (black borders on some images) and ``static`` (bins, bollards,
benches, advertising pillars on the sidewalks).

Colours overlap between classes (grey buildings, grey road, grey overcast sky, cars of any
colour, ...) and every image gets its own lighting, white balance, haze, sensor noise and blur,
so the classes have to be recognised from shape, texture and context; the layouts are still
simple enough that a small HRNetV2 learns them in minutes on a CPU.

The default image size is 512 x 256 (width x height, the Cityscapes 2:1 aspect at a quarter of
the linear resolution); everything is drawn in metres through the camera model, so any size
works. Everything is deterministic given ``seed`` (every image has its own RNG stream).
"""
from __future__ import annotations

import argparse
import colorsys
import math
import time
from pathlib import Path

import cv2
import numpy as np
from cityscapesscripts.helpers.labels import labels as _CS_LABELS
from cityscapesscripts.helpers.labels import name2label

TRAIN_CITIES = ("demotown", "synthville", "pixelburg")
VAL_CITIES = ("mocksford", "renderheim")
IMAGE_SUFFIX = "_leftImg8bit.png"
LABEL_IDS_SUFFIX = "_gtFine_labelIds.png"
COLOR_SUFFIX = "_gtFine_color.png"
INSTANCE_IDS_SUFFIX = "_gtFine_instanceIds.png"


def _lid(name: str) -> int:
    return int(name2label[name].id)


UNLABELED = _lid("unlabeled")
EGO = _lid("ego vehicle")
RECT_BORDER = _lid("rectification border")
OUT_OF_ROI = _lid("out of roi")
STATIC = _lid("static")
ROAD = _lid("road")
SIDEWALK = _lid("sidewalk")
BUILDING = _lid("building")
FENCE = _lid("fence")
POLE = _lid("pole")
TRAFFIC_LIGHT = _lid("traffic light")
TRAFFIC_SIGN = _lid("traffic sign")
VEGETATION = _lid("vegetation")
TERRAIN = _lid("terrain")
SKY = _lid("sky")
PERSON = _lid("person")
CAR = _lid("car")


def _colour_lut() -> np.ndarray:
    lut = np.zeros((256, 3), dtype=np.uint8)
    for lab in _CS_LABELS:
        if 0 <= lab.id < 256:
            lut[lab.id] = lab.color
    return lut


#: labelId -> RGB colour of the Cityscapes table (256 x 3, uint8).
LABEL_COLOURS: np.ndarray = _colour_lut()
LABEL_COLOURS.setflags(write=False)


# --------------------------------------------------------------------------- small helpers

def _hsv(h: float, s: float, v: float) -> tuple[float, float, float]:
    """HSV (h in degrees, s and v in 0..1) -> RGB 0..255 floats."""
    r, g, b = colorsys.hsv_to_rgb((h % 360.0) / 360.0, float(np.clip(s, 0, 1)), float(np.clip(v, 0, 1)))
    return (r * 255.0, g * 255.0, b * 255.0)


def _scale(c, f: float) -> tuple[float, float, float]:
    return tuple(min(255.0, max(0.0, float(x) * f)) for x in c)


def _mix(c, d, a: float) -> tuple[float, float, float]:
    return tuple(float((1 - a) * x + a * y) for x, y in zip(c, d))


def _value_noise(rng: np.random.Generator, h: int, w: int, cell: float) -> np.ndarray:
    """Smooth random field (zero mean, unit std) with features of about ``cell`` pixels."""
    cell = max(float(cell), 1.0)
    gh, gw = int(math.ceil(h / cell)) + 3, int(math.ceil(w / cell)) + 3
    grid = rng.standard_normal((gh, gw)).astype(np.float32)
    big = cv2.resize(grid, (int(gw * cell), int(gh * cell)), interpolation=cv2.INTER_CUBIC)
    oy, ox = int(rng.integers(0, int(cell) + 1)), int(rng.integers(0, int(cell) + 1))
    out = big[oy:oy + h, ox:ox + w]
    return (out - out.mean()) / (out.std() + 1e-6)


def _circle_pts(cx: float, cy: float, rx: float, ry: float | None = None, n: int = 20) -> np.ndarray:
    ry = rx if ry is None else ry
    a = np.linspace(0, 2 * np.pi, n, endpoint=False)
    return np.stack([cx + rx * np.cos(a), cy + ry * np.sin(a)], 1)


class _Painter:
    """Draws filled polygons into the image, labelIds, instanceIds and a texture-amplitude map.

    Texture is applied at the end: ``img *= 1 + tex[..., 0] * fine_noise + tex[..., 1] * mid_noise``,
    so every primitive chooses how grainy / blotchy it looks.
    """

    def __init__(self, w: int, h: int):
        self.w, self.h = w, h
        self.img = np.zeros((h, w, 3), np.float32)
        self.lab = np.zeros((h, w), np.uint8)
        self.inst = np.zeros((h, w), np.uint16)
        self.tex = np.zeros((h, w, 2), np.float32)
        self._scratch = np.zeros((h, w), np.uint8)

    @staticmethod
    def _fixed(pts) -> list[np.ndarray]:
        p = np.asarray(pts, dtype=np.float64).reshape(-1, 2)
        return [np.round(np.minimum(np.maximum(p, -1e5), 1e5) * 16.0).astype(np.int32)]

    def poly(self, pts, colour, label: int | None, tex=(0.03, 0.03), inst: int | None = None) -> None:
        """Fill a polygon; ``label=None`` paints the image only (details on an existing surface)."""
        p = self._fixed(pts)
        cv2.fillPoly(self.img, p, tuple(float(c) for c in colour), cv2.LINE_8, 4)
        cv2.fillPoly(self.tex, p, (float(tex[0]), float(tex[1])), cv2.LINE_8, 4)
        if label is not None:
            cv2.fillPoly(self.lab, p, int(label), cv2.LINE_8, 4)
            cv2.fillPoly(self.inst, p, int(label if inst is None else inst), cv2.LINE_8, 4)

    def polys(self, quads, colour, label: int | None, tex=(0.03, 0.03)) -> None:
        """Fill many polygons (N, K, 2) with one colour (one OpenCV call per map)."""
        p = list(np.round(np.clip(np.asarray(quads, np.float64), -1e5, 1e5) * 16.0).astype(np.int32))
        if not p:
            return
        cv2.fillPoly(self.img, p, tuple(float(c) for c in colour), cv2.LINE_8, 4)
        cv2.fillPoly(self.tex, p, (float(tex[0]), float(tex[1])), cv2.LINE_8, 4)
        if label is not None:
            cv2.fillPoly(self.lab, p, int(label), cv2.LINE_8, 4)
            cv2.fillPoly(self.inst, p, int(label), cv2.LINE_8, 4)

    def mask(self, pts) -> np.ndarray:
        self._scratch[:] = 0
        cv2.fillPoly(self._scratch, self._fixed(pts), 1, cv2.LINE_8, 4)
        return self._scratch.astype(bool)

    def shade(self, pts, factor: float) -> None:
        """Multiply the image inside a polygon (shadows, wear); labels unchanged."""
        q = np.asarray(pts, np.float64).reshape(-1, 2)
        x0, y0 = np.maximum(np.floor(q.min(0)).astype(int) - 1, 0)
        x1 = min(int(np.ceil(q[:, 0].max())) + 2, self.w)
        y1 = min(int(np.ceil(q[:, 1].max())) + 2, self.h)
        if x1 <= x0 or y1 <= y0:
            return
        local = np.zeros((y1 - y0, x1 - x0), np.uint8)
        cv2.fillPoly(local, self._fixed(q - (x0, y0)), 1, cv2.LINE_8, 4)
        self.img[y0:y1, x0:x1][local.astype(bool)] *= factor


class _Camera:
    """Pinhole camera at height ``cam_h`` looking along +Z; world X right, Y up, Z forward (metres)."""

    def __init__(self, f: float, cx: float, hy: float, cam_h: float):
        self.f, self.cx, self.hy, self.cam_h = f, cx, hy, cam_h

    def proj(self, pts) -> np.ndarray:
        p = np.asarray(pts, dtype=np.float64).reshape(-1, 3)
        z = np.maximum(p[:, 2], 0.05)
        return np.stack([self.cx + self.f * p[:, 0] / z, self.hy + self.f * (self.cam_h - p[:, 1]) / z], 1)

    def ppm(self, z: float) -> float:
        """Pixels per metre at depth z."""
        return self.f / max(z, 0.05)

    def ground_quad(self, x0, x1, z0, z1) -> np.ndarray:
        return self.proj([(x0, 0, z0), (x1, 0, z0), (x1, 0, z1), (x0, 0, z1)])

    def xplane_quad(self, x, z0, z1, y0, y1) -> np.ndarray:
        """Rectangle on the vertical plane X = x (a facade along the street)."""
        return self.proj([(x, y0, z0), (x, y0, z1), (x, y1, z1), (x, y1, z0)])

    def zplane_quad(self, z, x0, x1, y0, y1) -> np.ndarray:
        """Rectangle on the vertical plane Z = z (facing the camera)."""
        return self.proj([(x0, y0, z), (x1, y0, z), (x1, y1, z), (x0, y1, z)])

    def plane_quads(self, axis: str, c: float, u0, u1, y0, y1) -> np.ndarray:
        """(N, 4, 2) pixel quads of rectangles [u0, u1] x [y0, y1] on the vertical plane X = c
        (``axis="x"``, u is Z) or Z = c (``axis="z"``, u is X); arguments broadcast."""
        u0, u1, y0, y1 = np.broadcast_arrays(*(np.atleast_1d(np.asarray(v, np.float64)) for v in (u0, u1, y0, y1)))
        us = np.stack([u0, u1, u1, u0], 1)
        ys = np.stack([y0, y0, y1, y1], 1)
        if axis == "x":
            z = np.maximum(us, 0.05)
            x = self.cx + self.f * c / z
        else:
            z = np.full_like(us, max(c, 0.05))
            x = self.cx + self.f * us / z
        y = self.hy + self.f * (self.cam_h - ys) / z
        return np.stack([x, y], 2)


# --------------------------------------------------------------------------- palettes

def _building_colour(rng) -> tuple[float, float, float]:
    k = rng.random()
    if k < 0.35:   # greys / concrete
        return _hsv(rng.uniform(0, 360), rng.uniform(0, 0.08), rng.uniform(0.35, 0.8))
    if k < 0.6:    # beige, cream, sandstone
        return _hsv(rng.uniform(25, 50), rng.uniform(0.12, 0.35), rng.uniform(0.55, 0.9))
    if k < 0.78:   # brick
        return _hsv(rng.uniform(5, 22), rng.uniform(0.4, 0.7), rng.uniform(0.35, 0.65))
    if k < 0.9:    # pastel
        return _hsv(rng.uniform(0, 360), rng.uniform(0.15, 0.35), rng.uniform(0.65, 0.9))
    return _hsv(rng.uniform(20, 40), rng.uniform(0.2, 0.5), rng.uniform(0.2, 0.4))  # dark brown


def _car_colour(rng) -> tuple[float, float, float]:
    k = rng.random()
    if k < 0.22:
        return _hsv(0, 0, rng.uniform(0.78, 0.95))      # white
    if k < 0.42:
        return _hsv(rng.uniform(190, 230), rng.uniform(0, 0.08), rng.uniform(0.45, 0.7))  # silver / grey
    if k < 0.6:
        return _hsv(rng.uniform(0, 360), rng.uniform(0, 0.2), rng.uniform(0.06, 0.18))    # black
    return _hsv(rng.uniform(0, 360), rng.uniform(0.45, 0.9), rng.uniform(0.3, 0.85))      # any colour


def _cloth_colour(rng) -> tuple[float, float, float]:
    if rng.random() < 0.45:
        return _hsv(rng.uniform(0, 360), rng.uniform(0, 0.15), rng.uniform(0.08, 0.8))
    return _hsv(rng.uniform(0, 360), rng.uniform(0.3, 0.85), rng.uniform(0.2, 0.85))


def _skin_colour(rng) -> tuple[float, float, float]:
    return _hsv(rng.uniform(15, 30), rng.uniform(0.25, 0.6), rng.uniform(0.3, 0.95))


def _green(rng, dark: bool = True) -> tuple[float, float, float]:
    if rng.random() < 0.1:  # autumn foliage / dry grass
        return _hsv(rng.uniform(25, 45), rng.uniform(0.5, 0.8), rng.uniform(0.35, 0.7))
    if dark:
        return _hsv(rng.uniform(75, 125), rng.uniform(0.35, 0.75), rng.uniform(0.18, 0.5))
    return _hsv(rng.uniform(55, 100), rng.uniform(0.3, 0.65), rng.uniform(0.4, 0.75))


# --------------------------------------------------------------------------- scene

class _Scene:
    """Random street layout; draws itself into a :class:`_Painter`."""

    def __init__(self, rng: np.random.Generator, w: int, h: int):
        self.rng, self.w, self.h = rng, w, h
        self.cam = _Camera(f=w * rng.uniform(0.42, 0.62), cx=w * rng.uniform(0.38, 0.62),
                           hy=h * rng.uniform(0.36, 0.5), cam_h=rng.uniform(1.35, 2.1))
        self.p = _Painter(w, h)
        # street cross-section (X in metres, camera at X = 0)
        self.road_l = -rng.uniform(2.5, 7.0)
        self.road_r = rng.uniform(2.5, 7.0)
        self.sw = [rng.uniform(1.5, 4.5), rng.uniform(1.5, 4.5)]            # sidewalk widths L, R
        self.tw = [0.0 if rng.random() < 0.55 else rng.uniform(0.8, 4.0) for _ in range(2)]
        self.side_kind = ["buildings" if rng.random() < 0.68 else "park" for _ in range(2)]
        self.z_end = rng.uniform(45, 220)
        self.cross_street = rng.random() < 0.55
        self.z_far = 3000.0
        self.z_near = 0.4
        self.n_car = 0
        # thinnest pole / smallest sign and light scale in pixels (5.3 px at 512 wide), so that thin
        # objects survive the 1/4-resolution logits of a model trained at half resolution
        self.min_px = w / 96.0
        self.n_person = 0
        self.objects: list[tuple[float, object]] = []   # (depth, draw callable)

    # ---- geometry helpers
    def road_edge(self, side: int) -> float:
        return self.road_l if side == 0 else self.road_r

    def sgn(self, side: int) -> float:
        return -1.0 if side == 0 else 1.0

    def sidewalk_outer(self, side: int) -> float:
        return self.road_edge(side) + self.sgn(side) * self.sw[side]

    def facade_x(self, side: int) -> float:
        return self.sidewalk_outer(side) + self.sgn(side) * self.tw[side]

    # ---- rendering
    def render(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        rng = self.rng
        self.sky_colours = self._sky()
        self._skyline()
        self._far_ground()
        self._road()
        for side in (0, 1):
            self._sidewalk(side)
        for side in (0, 1):
            if self.side_kind[side] == "buildings":
                if self.tw[side] > 0:
                    self._terrain_strip(side)
                    if rng.random() < 0.5:
                        s = self.sgn(side)
                        self._fence(self.sidewalk_outer(side) + s * 0.1, rng.uniform(1, 10), rng.uniform(15, 70))
                self._facades(side)
            else:
                self._park(side)
        if self.cross_street:
            self._cross_facade()
        self._place_trees()
        self._place_poles()
        self._place_static()
        self._place_cars()
        self._place_persons()
        for _, draw in sorted(self.objects, key=lambda t: -t[0]):
            draw()
        if rng.random() < 0.75:
            self._ego_hood()
        img = self._finish()
        self._borders(img)
        return img, self.p.lab, self.p.inst

    def _sky(self):
        rng, p, w, h, hy = self.rng, self.p, self.w, self.h, self.cam.hy
        k = rng.random()
        if k < 0.5:     # clear / blue
            top = _hsv(rng.uniform(200, 225), rng.uniform(0.35, 0.65), rng.uniform(0.65, 0.95))
            bottom = _hsv(rng.uniform(195, 215), rng.uniform(0.08, 0.25), rng.uniform(0.82, 1.0))
        elif k < 0.85:  # overcast
            v = rng.uniform(0.6, 0.92)
            top = _hsv(rng.uniform(190, 230), rng.uniform(0.0, 0.1), v)
            bottom = _hsv(rng.uniform(190, 230), rng.uniform(0.0, 0.06), min(1.0, v + rng.uniform(0, 0.1)))
        else:           # evening
            top = _hsv(rng.uniform(210, 240), rng.uniform(0.3, 0.6), rng.uniform(0.45, 0.75))
            bottom = _hsv(rng.uniform(15, 40), rng.uniform(0.25, 0.5), rng.uniform(0.8, 1.0))
        t = np.clip(np.arange(h, dtype=np.float32) / max(hy, 1.0), 0, 1) ** rng.uniform(0.6, 1.6)
        col = (1 - t)[:, None] * np.float32(top) + t[:, None] * np.float32(bottom)
        sky = np.repeat(col[:, None, :], w, axis=1)
        clouds = 0.7 * _value_noise(rng, h, w, w / rng.uniform(3, 8)) + 0.3 * _value_noise(rng, h, w, w / 25)
        cover = rng.uniform(-0.5, 1.2)
        a = np.clip((clouds - cover) * rng.uniform(0.3, 0.8), 0, 0.85)[..., None]
        cloud_col = np.float32(_hsv(0, 0, rng.uniform(0.75, 1.0)))
        p.img[:] = sky * (1 - a) + cloud_col * a
        p.lab[:] = SKY
        p.inst[:] = SKY
        p.tex[:] = (0.008, 0.01)
        return top, bottom

    def _skyline(self):
        """Distant buildings and tree lines sitting on the horizon (seen where the street is open)."""
        rng, p, w, h, hy = self.rng, self.p, self.w, self.h, self.cam.hy
        haze = np.float32(self.sky_colours[1])
        x = -rng.uniform(0, 20)
        while x < w:
            bw = rng.uniform(0.03, 0.15) * w
            bh = rng.uniform(0.01, 0.09) * h
            y0 = hy + 2
            if rng.random() < 0.55:
                col = _mix(_building_colour(rng), haze, rng.uniform(0.3, 0.6))
                p.poly([(x, y0), (x + bw, y0), (x + bw, y0 - bh), (x, y0 - bh)], col, BUILDING, (0.03, 0.05))
            else:
                col = _mix(_green(rng), haze, rng.uniform(0.2, 0.5))
                n = max(3, int(bw / 4))
                xs = np.linspace(x, x + bw, n)
                tops = y0 - bh * (0.6 + 0.4 * rng.random(n))
                pts = [(x, y0)] + list(zip(xs, tops)) + [(x + bw, y0)]
                p.poly(pts, col, VEGETATION, (0.15, 0.1))
            x += bw * rng.uniform(0.7, 1.1)

    def _far_ground(self):
        rng, p, w, h, hy = self.rng, self.p, self.w, self.h, self.cam.hy
        col = _mix(_green(rng, dark=False), (150, 140, 110), rng.uniform(0.0, 0.5))
        p.poly([(-5, hy + 1.5), (w + 5, hy + 1.5), (w + 5, h + 5), (-5, h + 5)], col, TERRAIN, (0.12, 0.15))

    def _road(self):
        rng, p, cam = self.rng, self.p, self.cam
        v = rng.uniform(0.23, 0.5)
        base = _hsv(rng.uniform(0, 360), rng.uniform(0.0, 0.09), v)
        self.road_colour = base
        p.poly(cam.ground_quad(self.road_l, self.road_r, self.z_near, self.z_far), base, ROAD, (0.07, 0.06))
        # repairs / stains
        for _ in range(int(rng.integers(0, 5))):
            x0 = rng.uniform(self.road_l, self.road_r - 0.5)
            z0 = rng.uniform(3, 40)
            q = cam.ground_quad(x0, min(self.road_r, x0 + rng.uniform(0.5, 3)), z0, z0 + rng.uniform(1, 8))
            p.poly(q, _scale(base, rng.uniform(0.75, 1.2)), None, (0.07, 0.06))
        white = _hsv(rng.uniform(40, 60), rng.uniform(0, 0.25), rng.uniform(0.75, 0.95))
        wear = rng.uniform(0.55, 1.0)
        paint = _mix(base, white, wear)
        two_way = (self.road_r - self.road_l) > 6.5 and rng.random() < 0.85
        self.lanes = [0.5 * (self.road_l + self.road_r)]
        if two_way:
            c = 0.5 * (self.road_l + self.road_r) + rng.uniform(-0.6, 0.6)
            self.lanes = [0.5 * (self.road_l + c), 0.5 * (c + self.road_r)]
            dash, gap = rng.uniform(2, 4), rng.uniform(4, 9)
            z = rng.uniform(0.5, 4)
            while z < 300:
                p.poly(cam.ground_quad(c - 0.07, c + 0.07, z, z + dash), paint, None, (0.05, 0.05))
                z += dash + gap * (1 + z / 60)
        if rng.random() < 0.5:
            for xe in (self.road_l + 0.3, self.road_r - 0.3):
                p.poly(cam.ground_quad(xe - 0.06, xe + 0.06, self.z_near, 400), paint, None, (0.05, 0.05))
        if rng.random() < 0.35:  # zebra crossing
            zc = rng.uniform(6, 25)
            depth = rng.uniform(2.5, 4)
            x = self.road_l + 0.3
            while x < self.road_r - 0.5:
                p.poly(cam.ground_quad(x, x + 0.5, zc, zc + depth), paint, None, (0.05, 0.05))
                x += 1.0
            self.crossing = (zc, zc + depth)
        else:
            self.crossing = None

    def _sidewalk(self, side: int):
        rng, p, cam = self.rng, self.p, self.cam
        k = rng.random()
        if k < 0.5:
            col = _hsv(rng.uniform(0, 360), rng.uniform(0, 0.06), rng.uniform(0.45, 0.78))
        elif k < 0.8:
            col = _hsv(rng.uniform(20, 45), rng.uniform(0.1, 0.3), rng.uniform(0.5, 0.8))
        else:
            col = _hsv(rng.uniform(0, 18), rng.uniform(0.25, 0.5), rng.uniform(0.45, 0.72))
        edge, outer = self.road_edge(side), self.sidewalk_outer(side)
        x0, x1 = min(edge, outer), max(edge, outer)
        p.poly(cam.ground_quad(x0, x1, self.z_near, self.z_far), col, SIDEWALK, (0.05, 0.05))
        # curb
        s = self.sgn(side)
        curb = _scale(col, rng.uniform(0.75, 1.25))
        cx0, cx1 = sorted((edge, edge + s * 0.18))
        p.poly(cam.ground_quad(cx0, cx1, self.z_near, self.z_far), curb, SIDEWALK, (0.04, 0.04))
        # paving joints: lines along the street and across it, only where they are > 2 px apart
        tile = rng.uniform(0.4, 1.2)
        joint = _scale(col, rng.uniform(0.6, 0.85))
        lw = 0.03
        x = x0 + tile
        while x < x1 - 0.05:
            p.poly(cam.ground_quad(x - lw, x + lw, self.z_near, 80), joint, None, (0.03, 0.03))
            x += tile
        z = self.z_near
        while z < 80 and cam.ppm(z) * tile > 4:
            p.poly(cam.ground_quad(x0 + 0.18, x1, z - lw, z + lw), joint, None, (0.03, 0.03))
            z += tile

    def _terrain_strip(self, side: int):
        rng, p, cam = self.rng, self.p, self.cam
        a, b = sorted((self.sidewalk_outer(side), self.facade_x(side)))
        col = _mix(_green(rng, dark=False), (140, 120, 90), rng.uniform(0.0, 0.45))
        p.poly(cam.ground_quad(a, b, self.z_near, self.z_end), col, TERRAIN, (0.14, 0.16))

    def _facades(self, side: int):
        rng, p, cam = self.rng, self.p, self.cam
        xf = self.facade_x(side)
        light = rng.uniform(0.55, 1.05)
        z = self.z_near
        while z < self.z_end:
            length = rng.uniform(7, 28)
            z1 = min(z + length, self.z_end)
            if rng.random() < 0.1 and z > 10:   # a gap: trees or open sky behind
                self._tree(xf + self.sgn(side) * rng.uniform(2, 6), 0.5 * (z + z1), scale=1.4, direct=True)
                z = z1
                continue
            height = rng.uniform(6, 30)
            self._building_face(lambda a, b, y0, y1: cam.plane_quads("x", xf, a, b, y0, y1),
                                z, z1, height, light)
            z = z1

    def _cross_facade(self):
        rng, cam = self.rng, self.cam
        light = rng.uniform(0.7, 1.1)
        zc = self.z_end + rng.uniform(8, 20)
        x = -250.0
        while x < 250:
            length = rng.uniform(8, 30)
            self._building_face(lambda a, b, y0, y1: cam.plane_quads("z", zc, a, b, y0, y1),
                                x, x + length, rng.uniform(6, 30), light)
            x += length

    def _building_face(self, quad, u0: float, u1: float, height: float, light: float):
        """A facade rectangle spanning [u0, u1] along its plane and [0, height] up, with windows.

        ``quad(U0, U1, Y0, Y1)`` maps arrays of rectangles on the facade plane to (N, 4, 2) pixels.
        """
        rng, p = self.rng, self.p
        col = _scale(_building_colour(rng), light * rng.uniform(0.9, 1.1))
        p.poly(quad(u0, u1, 0, height)[0], col, BUILDING, (0.04, rng.uniform(0.03, 0.09)))
        # cornice / roof edge
        p.poly(quad(u0, u1, height - rng.uniform(0.3, 0.8), height)[0], _scale(col, rng.uniform(0.6, 1.3)),
               None, (0.04, 0.04))
        glass = _hsv(rng.uniform(190, 230), rng.uniform(0.1, 0.4), rng.uniform(0.12, 0.4))
        frame = _scale(col, rng.uniform(0.7, 1.35))
        floor_h = rng.uniform(2.8, 3.6)
        ground_h = rng.uniform(3.2, 4.6)
        win_w, win_h = rng.uniform(0.8, 1.6), rng.uniform(1.1, 1.8)
        spacing = win_w + rng.uniform(0.8, 2.2)
        shop = rng.random() < 0.5
        framed = rng.random() < 0.6
        shades = [_scale(glass, rng.uniform(0.8, 1.0)), _scale(glass, rng.uniform(1.0, 1.2)),
                  _mix(glass, self.sky_colours[1], 0.6), _hsv(45, 0.5, 0.9)]
        us = np.arange(u0 + rng.uniform(0.6, 1.5), u1 - win_w - 0.3, spacing)
        ys = np.arange(ground_h + 0.6, height - win_h - 0.6, floor_h)
        if len(us) and len(ys):
            uu, yy = (a.ravel() for a in np.meshgrid(us, ys))
            q = quad(uu, uu + win_w, yy, yy + win_h)
            ext = np.ptp(q, axis=1)                                  # (N, 2) projected size
            keep = (ext[:, 0] >= 1.2) & (ext[:, 1] >= 1.2)
            if keep.any():
                if framed:
                    big = keep & (ext[:, 0] > 5)
                    if big.any():
                        fq = quad(uu[big] - 0.12, uu[big] + win_w + 0.12, yy[big] - 0.12, yy[big] + win_h + 0.12)
                        p.polys(fq, frame, None, (0.03, 0.03))
                kind = rng.choice(4, size=len(uu), p=[0.4, 0.35, 0.15, 0.1])
                for k in range(4):
                    sel = keep & (kind == k)
                    if sel.any():
                        p.polys(q[sel], shades[k], None, (0.03, 0.05))
        # ground floor: shop windows or doors
        if len(us):
            ug = us[::2]
            if shop:
                q = quad(ug, np.minimum(ug + spacing * 1.5, u1 - 0.2), np.full_like(ug, 0.4),
                         np.full_like(ug, ground_h - 0.5))
            else:
                q = quad(ug, ug + 1.1, np.zeros_like(ug), np.full_like(ug, 2.2))
            q = q[np.ptp(q[:, :, 0], axis=1) >= 1.2]
            if len(q):
                p.polys(q, _scale(glass, rng.uniform(0.6, 1.1)), None, (0.03, 0.05))

    def _park(self, side: int):
        rng, p, cam = self.rng, self.p, self.cam
        s = self.sgn(side)
        outer = self.sidewalk_outer(side)
        col = _mix(_green(rng, dark=False), (140, 120, 90), rng.uniform(0.0, 0.45))
        a, b = sorted((outer, outer + s * 400))
        p.poly(cam.ground_quad(a, b, self.z_near, self.z_far), col, TERRAIN, (0.14, 0.16))
        # a wall of foliage further back with an irregular top
        xb = outer + s * rng.uniform(6, 30)
        zs = np.linspace(self.z_near, self.z_end, 60)
        tops = rng.uniform(4, 14) * (0.75 + 0.5 * _smooth_walk(rng, len(zs)))
        pts = np.concatenate([cam.proj(np.stack([np.full_like(zs, xb), tops, zs], 1)),
                              cam.proj([(xb, 0, self.z_end), (xb, 0, self.z_near)])])
        p.poly(pts, _green(rng), VEGETATION, (0.22, 0.15))
        for _ in range(int(rng.integers(3, 9))):
            z = rng.uniform(3, self.z_end * 0.7)
            self._tree(outer + s * rng.uniform(1.5, max(2.0, abs(xb - outer) - 1)), z, scale=rng.uniform(1, 1.6))
        if rng.random() < 0.6:      # hedge
            x0 = outer + s * rng.uniform(0.3, 1.5)
            self._hedge(x0, s, rng.uniform(2, 10), rng.uniform(15, 60))
        if rng.random() < 0.8:      # fence along the sidewalk
            self._fence(outer + s * 0.15, rng.uniform(2, 12), rng.uniform(12, 60))

    def _hedge(self, x0: float, s: float, z0: float, z1: float):
        rng, cam = self.rng, self.cam
        hgt = rng.uniform(0.7, 1.6)
        col = _green(self.rng)
        depth = 0.8
        xs = (x0, x0 + s * depth)

        def draw():
            zz = np.linspace(z0, z1, 24)
            tops = hgt * (0.85 + 0.15 * rng.random(len(zz)))
            front = np.concatenate([cam.proj(np.stack([np.full_like(zz, xs[0]), tops, zz], 1)),
                                    cam.proj([(xs[0], 0, z1), (xs[0], 0, z0)])])
            self.p.poly(cam.zplane_quad(z0, min(xs), max(xs), 0, hgt), _scale(col, 0.8), VEGETATION, (0.25, 0.15))
            self.p.poly(front, col, VEGETATION, (0.25, 0.15))
        self.objects.append((z0, draw))

    def _fence(self, x: float, z0: float, z1: float):
        rng, cam = self.rng, self.cam
        hgt = rng.uniform(0.9, 1.9)
        k = rng.random()
        col = (_hsv(rng.uniform(20, 35), rng.uniform(0.3, 0.6), rng.uniform(0.3, 0.65)) if k < 0.5
               else _hsv(rng.uniform(0, 360), rng.uniform(0, 0.15), rng.uniform(0.2, 0.7)))
        slat = rng.uniform(0.08, 0.15)
        gap = rng.uniform(0.04, 0.12)
        light = rng.uniform(0.7, 1.0)

        def draw():
            p = self.p
            # rails and posts; slats close enough that the fence reads as one surface
            p.poly(cam.xplane_quad(x, z0, z1, 0, hgt), _scale(col, 0.8 * light), FENCE, (0.1, 0.08))
            z = z0
            while z < z1 and cam.ppm(z) * (slat + gap) > 2.5:
                p.poly(cam.xplane_quad(x, z, z + slat, 0, hgt * 1.03), _scale(col, light), None, (0.08, 0.06))
                z += slat + gap
            for yy in (0.25 * hgt, 0.8 * hgt):
                p.poly(cam.xplane_quad(x, z0, z1, yy, yy + 0.08), _scale(col, 1.15 * light), None, (0.05, 0.05))
        self.objects.append((z1, draw))

    # ---- objects
    def _tree(self, x: float, z: float, scale: float = 1.0, direct: bool = False):
        rng, cam = self.rng, self.cam
        trunk_h = rng.uniform(1.8, 3.2) * scale
        radius = rng.uniform(1.4, 3.0) * scale
        trunk_col = _hsv(rng.uniform(20, 40), rng.uniform(0.2, 0.5), rng.uniform(0.2, 0.45))
        base = _green(rng)
        blobs = [(rng.normal(0, 0.45 * radius), trunk_h + radius * rng.uniform(0.6, 1.0) + rng.normal(0, 0.35 * radius),
                  radius * rng.uniform(0.45, 0.8), _scale(base, rng.uniform(0.75, 1.3)))
                 for _ in range(int(rng.integers(5, 10)))]

        def draw():
            p = self.p
            ppm = cam.ppm(z)
            tw = max(0.28 * ppm, 1.5)
            bx, by = cam.proj([(x, 0, z)])[0]
            p.poly([(bx - tw / 2, by), (bx + tw / 2, by), (bx + tw / 2 * 0.7, by - (trunk_h + radius) * ppm),
                    (bx - tw / 2 * 0.7, by - (trunk_h + radius) * ppm)], trunk_col, VEGETATION, (0.1, 0.1))
            for dx, yy, r, c in blobs:
                p.poly(_circle_pts(bx + dx * ppm, by - yy * ppm, r * ppm, n=18), c, VEGETATION, (0.28, 0.18))
        if direct:
            draw()
        else:
            self.objects.append((z, draw))

    def _place_trees(self):
        rng = self.rng
        for side in (0, 1):
            if self.side_kind[side] != "buildings" or rng.random() < 0.45:
                continue
            s = self.sgn(side)
            x = self.sidewalk_outer(side) - s * min(0.8, self.sw[side] * 0.4) + s * (self.tw[side] * 0.5)
            z = rng.uniform(3, 12)
            spacing = rng.uniform(7, 20)
            while z < min(self.z_end, 120):
                if rng.random() < 0.85:
                    self._tree(x, z, scale=rng.uniform(0.8, 1.3))
                z += spacing * rng.uniform(0.8, 1.2)

    def _place_poles(self):
        rng = self.rng
        for side in (0, 1):
            s = self.sgn(side)
            x = self.road_edge(side) + s * rng.uniform(0.35, 0.7)
            z = rng.uniform(4, 15)
            while z < min(self.z_end, 90):
                k = rng.random()
                if k < 0.35:
                    self._lamp(x, z, s)
                elif k < 0.7:
                    self._sign_pole(x, z)
                else:
                    self._light_pole(x, z, s)
                z += rng.uniform(8, 25)

    def _pole_colour(self):
        rng = self.rng
        k = rng.random()
        if k < 0.6:
            return _hsv(rng.uniform(180, 240), rng.uniform(0, 0.08), rng.uniform(0.35, 0.7))
        if k < 0.8:
            return _hsv(rng.uniform(120, 170), rng.uniform(0.2, 0.5), rng.uniform(0.15, 0.35))
        return _hsv(0, 0, rng.uniform(0.08, 0.2))

    def _pole_quad(self, x, z, y0, y1, thick):
        cam = self.cam
        ppm = cam.ppm(z)
        half = max(thick * ppm, self.min_px) / 2
        bx, by = cam.proj([(x, y0, z)])[0]
        _, ty = cam.proj([(x, y1, z)])[0]
        return [(bx - half, by), (bx + half, by), (bx + half, ty), (bx - half, ty)]

    def _lamp(self, x, z, s):
        rng, cam = self.rng, self.cam
        hgt, arm = rng.uniform(6, 9), rng.uniform(1.0, 2.5)
        col = self._pole_colour()

        def draw():
            p = self.p
            p.poly(self._pole_quad(x, z, 0, hgt, 0.3), col, POLE, (0.05, 0.05))
            a = cam.proj([(x, hgt - 0.1, z), (x - s * arm, hgt, z), (x - s * arm, hgt - 0.16, z), (x, hgt - 0.3, z)])
            a[2:, 1] = np.maximum(a[2:, 1], a[:2, 1][::-1] + 1.5)
            p.poly(a, col, POLE, (0.05, 0.05))
            hx, hy = cam.proj([(x - s * arm, hgt - 0.15, z)])[0]
            ppm = cam.ppm(z)
            p.poly([(hx - 0.35 * ppm, hy - 0.1 * ppm), (hx + 0.35 * ppm, hy - 0.1 * ppm),
                    (hx + 0.25 * ppm, hy + 0.18 * ppm), (hx - 0.25 * ppm, hy + 0.18 * ppm)],
                   _scale(col, 0.8), POLE, (0.05, 0.05))
        self.objects.append((z, draw))

    def _sign_pole(self, x, z):
        rng, cam = self.rng, self.cam
        hgt = rng.uniform(2.4, 3.4)
        size = rng.uniform(0.7, 1.0)
        col = self._pole_colour()
        kind = int(rng.integers(0, 5))
        two = rng.random() < 0.3

        def sign(cx, cy, r, kind):
            p = self.p
            white = (235, 235, 235)
            red, blue, yellow = (200, 30, 35), (30, 70, 170), (240, 200, 30)
            if kind == 0:      # round prohibition sign
                p.poly(_circle_pts(cx, cy, r), red, TRAFFIC_SIGN, (0.03, 0.03))
                p.poly(_circle_pts(cx, cy, r * 0.72), white, None, (0.03, 0.03))
            elif kind == 1:    # triangle warning sign
                tri = [(cx, cy - r), (cx + r, cy + 0.75 * r), (cx - r, cy + 0.75 * r)]
                p.poly(tri, red, TRAFFIC_SIGN, (0.03, 0.03))
                p.poly([(cx, cy - 0.45 * r), (cx + 0.55 * r, cy + 0.5 * r), (cx - 0.55 * r, cy + 0.5 * r)],
                       white, None, (0.03, 0.03))
            elif kind == 2:    # blue mandatory sign
                p.poly(_circle_pts(cx, cy, r), blue, TRAFFIC_SIGN, (0.03, 0.03))
                p.poly([(cx - 0.1 * r, cy + 0.6 * r), (cx + 0.1 * r, cy + 0.6 * r), (cx + 0.1 * r, cy - 0.5 * r),
                        (cx - 0.1 * r, cy - 0.5 * r)], white, None, (0.03, 0.03))
            elif kind == 3:    # priority road diamond
                p.poly([(cx, cy - r), (cx + r, cy), (cx, cy + r), (cx - r, cy)], white, TRAFFIC_SIGN, (0.03, 0.03))
                p.poly([(cx, cy - 0.6 * r), (cx + 0.6 * r, cy), (cx, cy + 0.6 * r), (cx - 0.6 * r, cy)],
                       yellow, None, (0.03, 0.03))
            else:              # rectangular information sign
                p.poly([(cx - r, cy - 0.7 * r), (cx + r, cy - 0.7 * r), (cx + r, cy + 0.7 * r),
                        (cx - r, cy + 0.7 * r)], blue if rng.random() < 0.6 else white, TRAFFIC_SIGN, (0.03, 0.03))

        def draw():
            p = self.p
            p.poly(self._pole_quad(x, z, 0, hgt, 0.2), col, POLE, (0.05, 0.05))
            ppm = cam.ppm(z)
            r = max(size * ppm / 2, 1.4 * self.min_px)
            cx, cy = cam.proj([(x, hgt - size / 2, z)])[0]
            sign(cx, cy, r, kind)
            if two:
                cx2, cy2 = cam.proj([(x, hgt - size * 1.6, z)])[0]
                sign(cx2, cy2, r * 0.8, (kind + 2) % 5)
        self.objects.append((z, draw))

    def _light_pole(self, x, z, s):
        rng, cam = self.rng, self.cam
        col = self._pole_colour()
        over_road = rng.random() < 0.4
        hgt = rng.uniform(5, 6.5) if over_road else rng.uniform(2.8, 4.0)
        arm = rng.uniform(2.5, 5.0)
        housing = (_hsv(0, 0, rng.uniform(0.05, 0.2)) if rng.random() < 0.7
                   else _hsv(rng.uniform(45, 55), 0.8, 0.85))
        lit = int(rng.integers(0, 3))

        def light(cx, top, ppm):
            p = self.p
            bw = max(0.42 * ppm, 1.8 * self.min_px)
            bh = 2.6 * bw
            p.poly([(cx - bw / 2, top), (cx + bw / 2, top), (cx + bw / 2, top + bh), (cx - bw / 2, top + bh)],
                   housing, TRAFFIC_LIGHT, (0.04, 0.04))
            lamp_cols = [(230, 40, 30), (240, 170, 20), (40, 220, 90)]
            for i in range(3):
                on = i == lit
                c = lamp_cols[i] if on else _scale(lamp_cols[i], 0.2)
                p.poly(_circle_pts(cx, top + bh * (i + 0.5) / 3, bw * 0.33, n=10), c, None, (0.02, 0.02))

        def draw():
            p = self.p
            p.poly(self._pole_quad(x, z, 0, hgt, 0.25), col, POLE, (0.05, 0.05))
            ppm = cam.ppm(z)
            if over_road:
                q = cam.proj([(x, hgt, z), (x - s * arm, hgt, z), (x - s * arm, hgt - 0.14, z), (x, hgt - 0.14, z)])
                q[2:, 1] = np.maximum(q[2:, 1], q[:2, 1][::-1] + 1.5)
                p.poly(q, col, POLE, (0.05, 0.05))
                cx, top = cam.proj([(x - s * arm * 0.85, hgt - 0.1, z)])[0]
                light(cx, top, ppm)
            else:
                cx, top = cam.proj([(x, hgt, z)])[0]
                light(cx, top - 0.9 * ppm, ppm)
        self.objects.append((z, draw))

    def _place_static(self):
        rng = self.rng
        for _ in range(int(rng.integers(0, 5))):
            side = int(rng.integers(0, 2))
            s = self.sgn(side)
            x = self.road_edge(side) + s * rng.uniform(0.4, max(0.5, self.sw[side] - 0.4))
            z = rng.uniform(3, 45)
            kind = int(rng.integers(0, 4))
            col = (_hsv(rng.uniform(0, 360), rng.uniform(0.1, 0.7), rng.uniform(0.15, 0.7)))
            self.objects.append((z, self._static_drawer(x, z, kind, col)))

    def _static_drawer(self, x, z, kind, col):
        cam = self.cam
        rng = self.rng
        poster = _hsv(rng.uniform(0, 360), rng.uniform(0.3, 0.9), rng.uniform(0.5, 0.95))

        def draw():
            p = self.p
            ppm = cam.ppm(z)
            bx, by = cam.proj([(x, 0, z)])[0]
            if kind == 0:    # bin
                w, h = 0.6, 1.0
            elif kind == 1:  # bollard
                w, h = 0.2, 0.9
            elif kind == 2:  # bench / box
                w, h = 1.6, 0.8
            else:            # advertising pillar
                w, h = 1.2, 2.8
            hw, hh = max(w * ppm / 2, 1.5), max(h * ppm, 3)
            p.poly([(bx - hw, by), (bx + hw, by), (bx + hw, by - hh), (bx - hw, by - hh)], col, STATIC, (0.06, 0.06))
            if kind == 3:
                p.poly([(bx - hw, by - 0.2 * hh), (bx + hw, by - 0.2 * hh), (bx + hw, by - 0.85 * hh),
                        (bx - hw, by - 0.85 * hh)], poster, None, (0.06, 0.1))
        return draw

    def _place_cars(self):
        rng = self.rng
        taken: list[tuple[float, float, float]] = []   # (x, z0, z1)

        def free(x, z0, z1):
            return all(abs(x - tx) > 2.1 or z1 < tz0 - 0.5 or z0 > tz1 + 0.5 for tx, tz0, tz1 in taken)

        # parked cars along the kerbs
        for side in (0, 1):
            if rng.random() < 0.45:
                continue
            s = self.sgn(side)
            x = self.road_edge(side) - s * rng.uniform(1.05, 1.3)
            z = rng.uniform(2.5, 9)
            while z < 70:
                L = rng.uniform(3.9, 4.9)
                if rng.random() < 0.75 and free(x, z, z + L):
                    taken.append((x, z, z + L))
                    self._car(x, z, L, facing_away=True)
                z += L + rng.uniform(0.6, 6)
        # moving traffic
        n = int(rng.integers(1, 5))
        for _ in range(n * 3):
            if n <= 0:
                break
            li = int(rng.integers(0, len(self.lanes)))
            x = self.lanes[li] + rng.uniform(-0.4, 0.4)
            z = float(np.exp(rng.uniform(np.log(4.5), np.log(70))))
            L = rng.uniform(3.9, 4.9)
            if free(x, z, z + L):
                taken.append((x, z, z + L))
                oncoming = len(self.lanes) == 2 and li == 0 and rng.random() < 0.85
                self._car(x, z, L, facing_away=not oncoming)
                n -= 1

    def _car(self, xc, z0, length, facing_away: bool):
        rng, cam = self.rng, self.cam
        self.n_car += 1
        inst = CAR * 1000 + self.n_car - 1
        width = rng.uniform(1.65, 1.95)
        body_top = rng.uniform(0.85, 1.05)
        roof = body_top + rng.uniform(0.4, 0.6)
        col = _car_colour(rng)
        glass = _hsv(rng.uniform(190, 230), rng.uniform(0.05, 0.3), rng.uniform(0.1, 0.3))
        x0, x1 = xc - width / 2, xc + width / 2
        cab_in = rng.uniform(0.08, 0.18)
        c0, c1 = z0 + rng.uniform(0.7, 1.1), z0 + length - rng.uniform(1.0, 1.6)
        lamp = (200, 25, 25) if facing_away else (235, 235, 215)
        van = rng.random() < 0.12
        if van:
            roof = body_top + rng.uniform(0.8, 1.1)
            c0, c1 = z0 + 0.05, z0 + length - 0.9

        def draw():
            p = self.p
            P = lambda pts: cam.proj(pts)  # noqa: E731
            tex = (0.04, 0.03)
            # side visible from the camera's line of sight
            if x0 > 0.05 or x1 < -0.05:
                xs = x0 if x0 > 0 else x1
                p.poly(cam.xplane_quad(xs, z0 + 0.3, z0 + length - 0.3, 0.1, 0.3), (28, 28, 30), CAR, tex, inst)
                p.poly(cam.xplane_quad(xs, z0, z0 + length, 0.25, body_top), _scale(col, 0.72), CAR, tex, inst)
                xcab = xs + (cab_in if xs == x0 else -cab_in)   # cabin side, set in from the body side
                p.poly(P([(xcab, body_top, c0 + 0.3), (xcab, body_top, c1 - 0.2),
                          (xcab, roof, c1 - 0.5), (xcab, roof, c0 + 0.6)]), _scale(col, 0.7), CAR, tex, inst)
                p.poly(P([(xs, body_top + 0.05, c0 + 0.45), (xs, body_top + 0.05, c1 - 0.3),
                          (xs, roof - 0.06, c1 - 0.55), (xs, roof - 0.06, c0 + 0.7)]), glass, None, tex)
                ang = np.linspace(0, 2 * np.pi, 12, endpoint=False)
                for zw in (z0 + 0.8, z0 + length - 0.8):
                    ring = np.stack([np.full(12, xs), 0.33 + 0.33 * np.sin(ang), zw + 0.33 * np.cos(ang)], 1)
                    p.poly(P(ring), (22, 22, 24), CAR, (0.05, 0.03), inst)
            # bonnet / roof seen from above (camera is higher than the car)
            p.poly(P([(x0, body_top, z0), (x1, body_top, z0), (x1, body_top, c0), (x0, body_top, c0)]),
                   _scale(col, 1.1), CAR, tex, inst)
            p.poly(P([(x0 + cab_in, roof, c0 + 0.3), (x1 - cab_in, roof, c0 + 0.3),
                      (x1 - cab_in, roof, c1 - 0.3), (x0 + cab_in, roof, c1 - 0.3)]), _scale(col, 1.12), CAR, tex, inst)
            # rear (or front) window, slanted
            p.poly(P([(x0 + cab_in, body_top, c0), (x1 - cab_in, body_top, c0),
                      (x1 - cab_in, roof, c0 + 0.3), (x0 + cab_in, roof, c0 + 0.3)]), _scale(col, 0.95), CAR, tex, inst)
            p.poly(P([(x0 + cab_in + 0.07, body_top + 0.04, c0 + 0.02),
                      (x1 - cab_in - 0.07, body_top + 0.04, c0 + 0.02),
                      (x1 - cab_in - 0.1, roof - 0.05, c0 + 0.27), (x0 + cab_in + 0.1, roof - 0.05, c0 + 0.27)]),
                   _mix(glass, self.sky_colours[0], 0.25), None, tex)
            # rear / front face
            p.poly(cam.zplane_quad(z0, x0, x1, 0.25, body_top), _scale(col, 0.9), CAR, tex, inst)
            p.poly(cam.zplane_quad(z0, x0 + 0.1, x1 - 0.1, 0.05, 0.3), (25, 25, 28), CAR, (0.04, 0.03), inst)
            for a, b in ((x0, x0 + 0.28), (x1 - 0.28, x1)):
                p.poly(cam.zplane_quad(z0, a, b, 0.0, 0.3), (18, 18, 20), CAR, (0.04, 0.03), inst)
                p.poly(cam.zplane_quad(z0 - 0.01, a + 0.04, b - 0.02, body_top - 0.28, body_top - 0.1), lamp, None,
                       (0.02, 0.02))
            p.poly(cam.zplane_quad(z0 - 0.01, xc - 0.26, xc + 0.26, 0.4, 0.52), (225, 225, 215), None, (0.02, 0.02))
            if not facing_away:
                p.poly(cam.zplane_quad(z0 - 0.01, xc - 0.5, xc + 0.5, 0.55, body_top - 0.12), (35, 35, 38), None,
                       (0.04, 0.03))

        def shadow_and_draw():
            self.p.shade(cam.ground_quad(x0 - 0.1, x1 + 0.1, z0 - 0.15, z0 + length), rng_factor)
            draw()
        rng_factor = rng.uniform(0.45, 0.75)
        self.objects.append((z0, shadow_and_draw))

    def _place_persons(self):
        rng = self.rng
        n = int(rng.integers(2, 9))
        for _ in range(n):
            side = int(rng.integers(0, 2))
            s = self.sgn(side)
            if self.crossing is not None and rng.random() < 0.25:
                x = rng.uniform(self.road_l + 0.5, self.road_r - 0.5)
                z = rng.uniform(*self.crossing)
            else:
                x = self.road_edge(side) + s * rng.uniform(0.4, max(0.5, self.sw[side] - 0.3))
                z = float(np.exp(rng.uniform(np.log(3.5), np.log(32))))
            self._person(x, z)

    def _person(self, x, z):
        rng, cam = self.rng, self.cam
        self.n_person += 1
        inst = PERSON * 1000 + self.n_person - 1
        hgt = rng.uniform(1.55, 1.95)
        shirt, trousers, skin = _cloth_colour(rng), _cloth_colour(rng), _skin_colour(rng)
        hair = _hsv(rng.uniform(15, 40), rng.uniform(0.2, 0.7), rng.uniform(0.05, 0.5))
        stride = rng.uniform(-0.18, 0.18)
        swing = rng.uniform(-0.12, 0.12)
        coat = rng.random() < 0.3
        bag = rng.random() < 0.25
        bag_col = _cloth_colour(rng)

        def draw():
            p = self.p
            s = cam.ppm(z)
            fx, fy = cam.proj([(x, 0, z)])[0]
            Q = lambda pts: [(fx + u * s, fy - v * s) for u, v in pts]  # noqa: E731
            tex = (0.05, 0.04)
            h = hgt
            hip, sh = 0.5 * h, 0.81 * h
            lw = 0.065 * h
            for sign in (-1, 1):  # legs
                dx = sign * 0.055 * h
                foot = dx + sign * stride * h * 0.5
                p.poly(Q([(dx - lw, hip), (dx + lw, hip), (foot + lw * 0.8, 0), (foot - lw * 0.8, 0)]),
                       trousers, PERSON, tex, inst)
                p.poly(Q([(foot - lw, 0.04 * h), (foot + lw * 1.6 * sign, 0.04 * h), (foot + lw * 1.6 * sign, 0),
                          (foot - lw, 0)]), (30, 28, 26), PERSON, tex, inst)
            torso_bottom = hip - (0.2 * h if coat else 0.02 * h)
            p.poly(Q([(-0.13 * h, torso_bottom), (0.13 * h, torso_bottom), (0.12 * h, sh), (-0.12 * h, sh)]),
                   shirt, PERSON, tex, inst)
            for sign in (-1, 1):  # arms
                ax = sign * 0.135 * h
                hand = ax + sign * 0.02 * h + sign * swing * h
                p.poly(Q([(ax - 0.035 * h, sh - 0.01 * h), (ax + 0.035 * h, sh - 0.01 * h),
                          (hand + 0.03 * h, 0.47 * h), (hand - 0.03 * h, 0.47 * h)]),
                       _scale(shirt, 0.85), PERSON, tex, inst)
                p.poly(_circle_pts(fx + hand * s, fy - 0.45 * h * s, 0.035 * h * s, n=8), skin, PERSON, tex, inst)
            if bag:
                p.poly(Q([(0.13 * h, 0.45 * h), (0.24 * h, 0.45 * h), (0.24 * h, 0.6 * h), (0.13 * h, 0.6 * h)]),
                       bag_col, PERSON, tex, inst)
            p.poly(Q([(-0.03 * h, sh), (0.03 * h, sh), (0.03 * h, 0.86 * h), (-0.03 * h, 0.86 * h)]), skin,
                   PERSON, tex, inst)
            p.poly(_circle_pts(fx, fy - 0.92 * h * s, 0.068 * h * s, 0.08 * h * s, n=14), skin, PERSON, tex, inst)
            p.poly(_circle_pts(fx, fy - 0.95 * h * s, 0.07 * h * s, 0.06 * h * s, n=14), hair, PERSON, tex, inst)
        self.objects.append((z, draw))

    def _ego_hood(self):
        rng, p, w, h = self.rng, self.p, self.w, self.h
        top = h * (1 - rng.uniform(0.06, 0.14))
        curve = h * rng.uniform(0.02, 0.06)
        xs = np.linspace(-2, w + 2, 40)
        c = w * rng.uniform(0.4, 0.6)
        ys = top + curve * ((xs - c) / (w / 2)) ** 2
        pts = np.concatenate([np.stack([xs, ys], 1), [(w + 2, h + 2), (-2, h + 2)]])
        col = _car_colour(rng)
        p.poly(pts, _scale(col, 0.7), EGO, (0.02, 0.04))
        # a soft reflection of the sky on the bonnet (labels unchanged)
        refl = np.concatenate([np.stack([xs, ys + 0.25 * (h - ys)], 1),
                               np.stack([xs[::-1], (ys + 0.45 * (h - ys))[::-1]], 1)])
        p.poly(refl, _mix(_scale(col, 0.7), self.sky_colours[1], 0.35), None, (0.02, 0.04))

    def _finish(self) -> np.ndarray:
        """Textures, haze, lighting, noise and blur -> uint8 RGB image."""
        rng, p, w, h = self.rng, self.p, self.w, self.h
        fine = cv2.GaussianBlur(rng.standard_normal((h, w)).astype(np.float32), (0, 0), 0.6)
        fine /= fine.std() + 1e-6
        mid = _value_noise(rng, h, w, max(3.0, h / 40))
        img = p.img * (1 + p.tex[..., 0] * fine * 1.6 + p.tex[..., 1] * mid)[..., None]
        # haze towards the horizon
        dist = np.abs(np.arange(h, dtype=np.float32) - self.cam.hy) / (h * rng.uniform(0.05, 0.12))
        a = (rng.uniform(0.0, 0.35) * np.exp(-dist))[:, None, None]
        img = img * (1 - a) + np.float32(self.sky_colours[1]) * a
        # sun / shade: a soft brightness gradient across the image
        gx = np.linspace(-1, 1, w, dtype=np.float32)[None, :, None] * rng.uniform(-0.15, 0.15)
        gy = np.linspace(-1, 1, h, dtype=np.float32)[:, None, None] * rng.uniform(-0.1, 0.1)
        img = img * (1 + gx + gy)
        gain = rng.uniform(0.65, 1.25)
        wb = np.float32([rng.uniform(0.9, 1.1), 1.0, rng.uniform(0.9, 1.1)])
        img = np.clip(img * (gain * wb), 0, 255).astype(np.uint8)
        gamma = np.clip(np.round(255.0 * (np.arange(256) / 255.0) ** rng.uniform(0.8, 1.25)), 0, 255)
        img = cv2.LUT(img, gamma.astype(np.uint8)).astype(np.float32)
        img += rng.standard_normal(img.shape, dtype=np.float32) * np.float32(rng.uniform(1.0, 5.0))
        img = cv2.GaussianBlur(img, (0, 0), rng.uniform(0.35, 0.9))
        return np.clip(np.round(img), 0, 255).astype(np.uint8)

    def _borders(self, img: np.ndarray) -> None:
        """Black borders labelled 'out of roi' / 'rectification border' on some images (void)."""
        rng, p, w, h = self.rng, self.p, self.w, self.h
        if rng.random() < 0.3:
            m = np.zeros((h, w), bool)
            m[:, :max(1, int(w * rng.uniform(0.005, 0.02)))] = True
            m[:, w - max(1, int(w * rng.uniform(0.005, 0.02))):] = True
            m[h - max(1, int(h * rng.uniform(0.005, 0.03))):, :] = True
            p.lab[m] = OUT_OF_ROI
            p.inst[m] = OUT_OF_ROI
            img[m] = rng.integers(0, 12, size=(int(m.sum()), 3))
        if rng.random() < 0.35:
            for corner in (0, 1):
                if rng.random() < 0.3:
                    continue
                d = w * rng.uniform(0.02, 0.07)
                hh = h * rng.uniform(0.05, 0.2)
                pts = [(0, h - hh), (d, h), (0, h)] if corner == 0 else [(w, h - hh), (w - d, h), (w, h)]
                m = p.mask([(x * 1.0, y * 1.0) for x, y in pts])
                p.lab[m] = RECT_BORDER
                p.inst[m] = RECT_BORDER
                img[m] = 0


def _smooth_walk(rng, n: int) -> np.ndarray:
    v = np.cumsum(rng.normal(0, 1, n))
    v = cv2.GaussianBlur(v.reshape(1, -1).astype(np.float32), (0, 0), 2).ravel()
    v -= v.min()
    return v / (v.max() + 1e-6)


def render_scene(rng: np.random.Generator, width: int, height: int
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One street scene: ``(image RGB uint8 (H, W, 3), labelIds uint8 (H, W), instanceIds uint16 (H, W))``."""
    return _Scene(rng, width, height).render()


# --------------------------------------------------------------------------- dataset writer

def _write_png(path: Path, array: np.ndarray) -> None:
    if not cv2.imwrite(str(path), array):
        raise OSError(f"could not write {path}")


def label_colour_image(label_ids: np.ndarray) -> np.ndarray:
    """labelIds (H, W) -> RGB colour image (H, W, 3) using the Cityscapes table colours."""
    return LABEL_COLOURS[np.asarray(label_ids, dtype=np.uint8)]


def _names(num: int, cities: tuple[str, ...]) -> list[tuple[str, str]]:
    """(city, stem) per image: cities in turn; 3 frames per sequence like Cityscapes' naming."""
    out = []
    counters = {c: 0 for c in cities}
    for i in range(num):
        city = cities[i % len(cities)]
        k = counters[city]
        counters[city] += 1
        seq, frame = k // 3, 19 + 40 * (k % 3)
        out.append((city, f"{city}_{seq:06d}_{frame:06d}"))
    return out


def make_seg_demo(out_dir: str | Path, num_train: int = 60, num_val: int = 20,
                  image_size: tuple[int, int] = (512, 256), seed: int = 0,
                  progress: bool = True) -> dict:
    """Generate the synthetic Cityscapes-format street-scene dataset under ``out_dir``.

    Args:
        out_dir: dataset root (created); files of the same names are overwritten.
        num_train / num_val: number of images in the ``train`` / ``val`` splits.
        image_size: ``(width, height)`` in pixels; default 512 x 256 (Cityscapes' 2:1 aspect at a
            quarter of its 2048 x 1024 resolution).
        seed: every image and label is a function of it (each image has its own RNG stream).
        progress: print progress lines.

    Returns:
        A summary dict: ``root``, ``image_size`` ([W, H]), per split (``train`` / ``val``) a dict
        with ``images``, ``cities``, ``cars``, ``persons`` (instances) and ``label_pixels``
        (``{label name: pixel count}``), plus ``seconds``.
    """
    t0 = time.time()
    w, h = int(image_size[0]), int(image_size[1])
    if w < 64 or h < 32:
        raise ValueError(f"image_size (width, height) too small: {image_size}")
    if num_train < 0 or num_val < 0:
        raise ValueError("num_train and num_val must be >= 0")
    root = Path(out_dir)
    id2name = {lab.id: lab.name for lab in _CS_LABELS if lab.id >= 0}
    summary: dict = {"root": str(root), "image_size": [w, h]}
    for split_code, (split, num, cities) in enumerate((("train", num_train, TRAIN_CITIES),
                                                       ("val", num_val, VAL_CITIES))):
        counts = np.zeros(256, np.int64)
        n_car = n_person = 0
        names = _names(num, cities)
        for city in sorted({c for c, _ in names}):
            (root / "leftImg8bit" / split / city).mkdir(parents=True, exist_ok=True)
            (root / "gtFine" / split / city).mkdir(parents=True, exist_ok=True)
        for i, (city, stem) in enumerate(names):
            rng = np.random.default_rng([seed, split_code, i])
            scene = _Scene(rng, w, h)
            img, lab, inst = scene.render()
            n_car += scene.n_car
            n_person += scene.n_person
            _write_png(root / "leftImg8bit" / split / city / f"{stem}{IMAGE_SUFFIX}",
                       cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
            gt = root / "gtFine" / split / city
            _write_png(gt / f"{stem}{LABEL_IDS_SUFFIX}", lab)
            colour = label_colour_image(lab)
            rgba = np.concatenate([colour[..., ::-1], np.full((h, w, 1), 255, np.uint8)], 2)  # BGRA on disk
            _write_png(gt / f"{stem}{COLOR_SUFFIX}", rgba)
            _write_png(gt / f"{stem}{INSTANCE_IDS_SUFFIX}", inst)
            counts += np.bincount(lab.ravel(), minlength=256)
            if progress and ((i + 1) % 20 == 0 or i + 1 == num):
                print(f"[seg demo] {split}: {i + 1}/{num} images", flush=True)
        summary[split] = {
            "images": num,
            "cities": sorted({c for c, _ in names}),
            "cars": n_car,
            "persons": n_person,
            "label_pixels": {id2name[int(k)]: int(counts[k]) for k in np.nonzero(counts)[0]},
        }
    summary["seconds"] = round(time.time() - t0, 2)
    if progress:
        print(f"[seg demo] wrote {num_train}+{num_val} images ({w}x{h}) in Cityscapes layout to {root} "
              f"in {summary['seconds']:.1f}s", flush=True)
    return summary


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description="Generate the synthetic Cityscapes-format segmentation demo dataset.")
    ap.add_argument("out_dir")
    ap.add_argument("--train", type=int, default=60)
    ap.add_argument("--val", type=int, default=20)
    ap.add_argument("--width", type=int, default=512)
    ap.add_argument("--height", type=int, default=256)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    make_seg_demo(args.out_dir, args.train, args.val, (args.width, args.height), args.seed)


if __name__ == "__main__":
    main()
