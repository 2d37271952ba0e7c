"""Synthetic indoor scenes with exact per-pixel segmentation, depth, surface normals and semantic
boundaries, in the NYUD-v2 multi-task layout: the demo of dense multi-task learning
(`platform data demo --task scenes`, trained by tasks/mtl_scenes_demo.yaml)::

    <out_dir>/images/<stem>.jpg          RGB photo (JPEG quality 95)
    <out_dir>/segmentation/<stem>.png    uint8 class id + 1 (0 = void: the ray hit nothing)
    <out_dir>/depth/<stem>.npy           float32 (H, W) metres along the optical axis; 0 = no hit
    <out_dir>/normals/<stem>.png         RGB uint8 round((n + 1) / 2 * 255), n the unit normal in camera
                                         coordinates; (0, 0, 0) = no hit
    <out_dir>/edge/<stem>.png            uint8 255 on 1-pixel-wide semantic boundaries, else 0
    <out_dir>/gt_sets/{train,val}.txt    stems, one a line (6-digit numbers, train first, then val)
    <out_dir>/classes.yaml               the class list (class_info format, reduce_zero_label)
    <out_dir>/camera.yaml                the pinhole intrinsics shared by every image, and the conventions

Every image is ray-cast (vectorised numpy, one ray per pixel centre) through a pinhole camera at a
random height, pitch and yaw inside a box-shaped room: floor, walls, often a ceiling, and 2-6 objects
(boxes, some yawed and some stacked, spheres, tables) that hide each other and are cut by the border.
The nearest hit gives class, depth and normal; shading is Lambertian under a point light with hard
shadows and ambient light, on colours drawn per surface with solid textures (planks, tiles, blotches)
and sensor noise, so that colour alone does not give the class away.

Coordinates: the world is right-handed with z up and the floor at z = 0 (metres). The camera frame is
OpenCV's: x right, y down, z forward. Deterministic given ``seed``: each image has its own RNG stream.
"""
from __future__ import annotations

import colorsys
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

import cv2
import numpy as np

NAMES = ("floor", "wall", "ceiling", "box", "sphere", "table")
PALETTE = ((152, 104, 60), (174, 199, 232), (240, 230, 140), (255, 127, 14), (214, 39, 40), (44, 160, 44))
FLOOR, WALL, CEILING, BOX, SPHERE, TABLE = range(len(NAMES))
VOID = -1                       # class map value of pixels that hit nothing (stored as 0)
FOCAL_PER_WIDTH = 0.75          # fx = fy = 0.75 * width: a 67 degree horizontal field of view
JPEG_QUALITY = 95
T_MIN = 1e-6                    # hits closer than this along a ray are ignored
SHADOW_OFFSET = 1e-3            # shadow rays start this far (metres) off the surface


# ---------------------------------------------------------------------- camera


def intrinsics(width: int, height: int) -> dict[str, float]:
    """The fixed pinhole intrinsics of an image size: fx = fy = 0.75 * width, principal point at the
    image centre with pixel centres at integer coordinates."""
    f = FOCAL_PER_WIDTH * width
    return {"fx": f, "fy": f, "cx": (width - 1) / 2, "cy": (height - 1) / 2,
            "width": int(width), "height": int(height)}


def look_rotation(yaw: float, pitch: float) -> np.ndarray:
    """Camera-to-world rotation (3, 3) whose columns are the camera's x (right), y (down) and z
    (forward) axes in world coordinates. ``yaw`` (radians) turns from the world +y axis towards +x,
    ``pitch`` (radians) > 0 looks down; the camera never rolls."""
    forward = np.array([math.sin(yaw) * math.cos(pitch), math.cos(yaw) * math.cos(pitch), -math.sin(pitch)])
    right = np.array([math.cos(yaw), -math.sin(yaw), 0.0])
    down = np.cross(forward, right)
    return np.stack([right, down, forward], axis=1)


@dataclass(frozen=True)
class Camera:
    """A pinhole camera: intrinsics in pixels, pose in world coordinates (metres)."""

    width: int
    height: int
    fx: float
    fy: float
    cx: float
    cy: float
    position: np.ndarray            # (3,) world coordinates of the optical centre
    rotation: np.ndarray            # (3, 3) camera -> world (see look_rotation)

    @classmethod
    def looking(cls, width: int, height: int, position: Sequence[float], yaw: float, pitch: float) -> "Camera":
        """The camera of the fixed intrinsics at ``position`` looking along ``yaw`` / ``pitch``."""
        k = intrinsics(width, height)
        return cls(width, height, k["fx"], k["fy"], k["cx"], k["cy"],
                   np.asarray(position, np.float64), look_rotation(yaw, pitch))

    def camera_rays(self) -> np.ndarray:
        """(H*W, 3) ray directions in camera coordinates through the pixel centres, row-major, with
        z = 1: a hit at ray parameter t has depth (camera z) t."""
        v, u = np.mgrid[0:self.height, 0:self.width].astype(np.float64)
        rays = np.stack([(u - self.cx) / self.fx, (v - self.cy) / self.fy, np.ones_like(u)], axis=-1)
        return rays.reshape(-1, 3)


# ---------------------------------------------------------------------- surfaces


@dataclass(frozen=True)
class Material:
    """Albedo (linear RGB in 0..1) modulated by a solid texture in the shape's own frame."""

    colour: np.ndarray
    texture: str = "plain"          # plain, stripes, checker or blotch
    scale: float = 0.3              # texture period in metres
    strength: float = 0.0           # texture contrast (0 = flat colour)
    waves: np.ndarray = field(default_factory=lambda: np.zeros((3, 4)))  # 3 waves: direction (3) + phase

    def albedo(self, local: np.ndarray) -> np.ndarray:
        """(N, 3) albedo at points given in the shape's frame (metres)."""
        return self.colour[None, :] * _texture(self, local)[:, None]


def _texture(m: Material, p: np.ndarray) -> np.ndarray:
    """(N,) brightness factor of a solid texture around 1."""
    phase = m.waves[:, 3]
    if m.texture == "stripes":      # planks: a groove every period and a slow grain along the boards
        s = p @ m.waves[0, :3] / m.scale + phase[0]
        board = np.floor(s)
        grain = np.sin(p @ m.waves[1, :3] * 3.0 / m.scale + 7.0 * board)
        groove = (s - board) < 0.06
        shade = 1 + m.strength * (0.5 * np.sin(board * 2.7 + phase[1]) + 0.3 * grain)
        return np.where(groove, 1 - m.strength, shade)
    if m.texture == "checker":      # tiles; the phases keep tile edges off the faces themselves
        cells = np.floor(p / m.scale + phase[None, :3]).sum(axis=1)
        return 1 + m.strength * (np.mod(cells, 2) - 0.5)
    wave = sum(np.sin(p @ m.waves[i, :3] * (2 * math.pi / m.scale) + phase[i]) for i in range(3)) / 3
    if m.texture == "blotch":
        return 1 + m.strength * wave
    return 1 + 0.2 * m.strength * wave   # plain: a faint unevenness


class Shape:
    """A surface of the scene: its class, instance id (1, 2, ...) and material. Subclasses give the
    ray parameter of the first hit from outside (``distance``; ``inf`` where missed), the outward
    unit normal at surface points (``normal_at``) and a bounding sphere (``bound``) for culling."""

    def __init__(self, class_id: int, instance: int, material: Material):
        self.class_id, self.instance, self.material = class_id, instance, material

    def distance(self, origins: np.ndarray, dirs: np.ndarray) -> np.ndarray:
        """(N,) ray parameter t of the first hit (point = origin + t * dir), ``inf`` where missed."""
        raise NotImplementedError

    def normal_at(self, points: np.ndarray) -> np.ndarray:
        """(N, 3) outward unit normals (world coordinates) at points on the surface."""
        raise NotImplementedError

    def bound(self) -> Optional[tuple[np.ndarray, float]]:
        """(centre, radius) of a sphere holding the shape; None if unbounded."""
        return None

    def local(self, points: np.ndarray) -> np.ndarray:
        """Points in the shape's frame (for its texture)."""
        return points


class Plane(Shape):
    """The front side of the plane ``normal . p = offset``; rays from behind pass through."""

    def __init__(self, class_id: int, instance: int, material: Material, normal: Sequence[float], offset: float):
        super().__init__(class_id, instance, material)
        self.normal = np.asarray(normal, np.float64) / np.linalg.norm(normal)
        self.offset = float(offset)

    def distance(self, origins: np.ndarray, dirs: np.ndarray) -> np.ndarray:
        denom = dirs @ self.normal
        with np.errstate(divide="ignore", invalid="ignore"):
            t = (self.offset - origins @ self.normal) / denom
        return np.where((denom < -1e-12) & (t > T_MIN), t, np.inf)

    def normal_at(self, points: np.ndarray) -> np.ndarray:
        return np.broadcast_to(self.normal, points.shape)


class Box(Shape):
    """A box of half extents ``half`` (x, y, z) centred at ``centre``, turned by ``yaw`` about the
    vertical axis (radians, counter-clockwise seen from above)."""

    def __init__(self, class_id: int, instance: int, material: Material, centre: Sequence[float],
                 half: Sequence[float], yaw: float = 0.0):
        super().__init__(class_id, instance, material)
        self.centre = np.asarray(centre, np.float64)
        self.half = np.asarray(half, np.float64)
        self.yaw = float(yaw)
        c, s = math.cos(yaw), math.sin(yaw)
        self.to_world = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])

    @property
    def top(self) -> float:
        return float(self.centre[2] + self.half[2])

    def local(self, points: np.ndarray) -> np.ndarray:
        return (points - self.centre) @ self.to_world

    def bound(self) -> Optional[tuple[np.ndarray, float]]:
        return self.centre, float(np.linalg.norm(self.half))

    def distance(self, origins: np.ndarray, dirs: np.ndarray) -> np.ndarray:
        o = self.local(origins)
        d = dirs @ self.to_world
        inv = 1.0 / np.where(np.abs(d) < 1e-12, 1e-12, d)
        t1, t2 = (-self.half - o) * inv, (self.half - o) * inv
        t_near = np.minimum(t1, t2).max(axis=1)
        t_far = np.maximum(t1, t2).min(axis=1)
        return np.where((t_near <= t_far) & (t_near > T_MIN), t_near, np.inf)

    def normal_at(self, points: np.ndarray) -> np.ndarray:
        p = self.local(points)
        axis = (np.abs(p) / self.half).argmax(axis=1)      # the face the point lies on
        rows = np.arange(len(p))
        normal = np.zeros_like(p)
        normal[rows, axis] = np.sign(p[rows, axis])
        return normal @ self.to_world.T


class Sphere(Shape):
    """A sphere of ``radius`` around ``centre``."""

    def __init__(self, class_id: int, instance: int, material: Material, centre: Sequence[float], radius: float):
        super().__init__(class_id, instance, material)
        self.centre = np.asarray(centre, np.float64)
        self.radius = float(radius)

    def local(self, points: np.ndarray) -> np.ndarray:
        return points - self.centre

    def bound(self) -> Optional[tuple[np.ndarray, float]]:
        return self.centre, self.radius

    def distance(self, origins: np.ndarray, dirs: np.ndarray) -> np.ndarray:
        oc = np.broadcast_to(origins - self.centre, dirs.shape)
        a = np.einsum("ij,ij->i", dirs, dirs)
        b = np.einsum("ij,ij->i", oc, dirs)
        c = np.einsum("ij,ij->i", oc, oc) - self.radius ** 2
        disc = b * b - a * c
        t = (-b - np.sqrt(np.maximum(disc, 0.0))) / a
        return np.where((disc >= 0) & (t > T_MIN), t, np.inf)

    def normal_at(self, points: np.ndarray) -> np.ndarray:
        n = points - self.centre
        return n / np.linalg.norm(n, axis=1, keepdims=True)


@dataclass
class Scene:
    """Surfaces, a point light and the ambient light. ``occluders`` are the shapes that cast
    shadows (the objects; the room's own surfaces are left out since the light is inside it)."""

    shapes: list[Shape]
    light: np.ndarray                       # (3,) world position
    light_colour: np.ndarray = field(default_factory=lambda: np.ones(3))
    light_power: float = 1.0
    ambient: float = 0.3
    occluders: Optional[list[int]] = None   # indices into shapes; None = all


# ---------------------------------------------------------------------- rendering


@dataclass
class Rendering:
    """Per-pixel results of one image (H, W): class ids (VOID = -1 where nothing is hit), instance
    ids (0 = nothing), depth (camera z, metres, 0 = nothing), unit normals in camera coordinates
    ((0, 0, 0) = nothing), uint8 RGB image and the semantic boundaries."""

    classes: np.ndarray
    instances: np.ndarray
    depth: np.ndarray
    normals: np.ndarray
    image: np.ndarray
    edges: np.ndarray


def _candidates(shape: Shape, apex: np.ndarray, units: np.ndarray) -> Optional[np.ndarray]:
    """Indices of the rays of a pencil through ``apex`` (unit directions ``units``, pointing from the
    apex along the part of each ray that matters) that can meet the shape's bounding sphere; None = all."""
    bound = shape.bound()
    if bound is None:
        return None
    centre, radius = bound
    to_centre = centre - apex
    dist = float(np.linalg.norm(to_centre))
    radius = radius * 1.001 + 1e-6
    if dist <= radius:
        return None
    cos_cone = math.sqrt(1.0 - (radius / dist) ** 2)
    return np.flatnonzero(units @ (to_centre / dist) >= cos_cone - 1e-9)


def trace(shapes: Sequence[Shape], origin: np.ndarray, dirs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Nearest hit of rays from one ``origin`` over ``shapes``: (t, index of the shape or -1) per ray."""
    best = np.full(len(dirs), np.inf)
    index = np.full(len(dirs), -1, np.int64)
    units = dirs / np.linalg.norm(dirs, axis=1, keepdims=True)
    for i, shape in enumerate(shapes):
        rows = _candidates(shape, origin, units)
        if rows is None:
            t = shape.distance(origin, dirs)
            closer = t < best
            best[closer], index[closer] = t[closer], i
        elif len(rows):
            t = shape.distance(origin, dirs[rows])
            closer = t < best[rows]
            best[rows[closer]], index[rows[closer]] = t[closer], i
    return best, index


def blocked(shapes: Sequence[Shape], points: np.ndarray, light: np.ndarray) -> np.ndarray:
    """(N,) bool: the segment from each point to the ``light`` meets one of ``shapes``."""
    to_light = light - points
    units = -to_light / np.linalg.norm(to_light, axis=1, keepdims=True)   # from the light back to the points
    out = np.zeros(len(points), bool)
    for shape in shapes:
        rows = _candidates(shape, light, units)
        rows = np.flatnonzero(~out) if rows is None else rows[~out[rows]]
        if len(rows):
            out[rows[shape.distance(points[rows], to_light[rows]) < 1.0]] = True
    return out


def render_scene(scene: Scene, camera: Camera, rng: Optional[np.random.Generator] = None,
                 noise: float = 0.0) -> Rendering:
    """Ray-cast ``scene`` through ``camera``: one ray per pixel centre, the nearest hit wins.
    ``noise``: standard deviation of the sensor noise added to the image (0..255 scale; needs ``rng``)."""
    h, w = camera.height, camera.width
    cam_dirs = camera.camera_rays()
    dirs = cam_dirs @ camera.rotation.T          # world directions; camera z component of each is 1
    t, index = trace(scene.shapes, camera.position, dirs)
    hit = index >= 0
    points = camera.position + np.where(hit, t, 0.0)[:, None] * dirs
    normal_world, albedo = np.zeros_like(points), np.zeros_like(points)
    for i, shape in enumerate(scene.shapes):
        mask = index == i
        if mask.any():
            normal_world[mask] = shape.normal_at(points[mask])
            albedo[mask] = shape.material.albedo(shape.local(points[mask]))
    normals = normal_world @ camera.rotation     # world -> camera coordinates
    facing = np.einsum("ij,ij->i", normals, cam_dirs)
    normals = np.where(facing[:, None] > 0, -normals, normals)   # planes seen from behind never face away
    normals /= np.maximum(np.linalg.norm(normals, axis=1, keepdims=True), 1e-12)
    normals[~hit] = 0.0
    image = _shade(scene, points, normal_world, albedo, hit, rng, noise)
    depth_map = np.where(hit, t, 0.0).reshape(h, w).astype(np.float32)
    instance_map = np.array([s.instance for s in scene.shapes] + [0])[index].reshape(h, w).astype(np.int32)
    classes = np.array([s.class_id for s in scene.shapes] + [VOID])[index].reshape(h, w).astype(np.int16)
    return Rendering(classes=classes, instances=instance_map, depth=depth_map,
                     normals=normals.reshape(h, w, 3).astype(np.float32),
                     image=image.reshape(h, w, 3), edges=semantic_boundaries(instance_map, depth_map))


def _shade(scene: Scene, points: np.ndarray, normals: np.ndarray, albedo: np.ndarray, hit: np.ndarray,
           rng: Optional[np.random.Generator], noise: float) -> np.ndarray:
    """(N, 3) uint8 RGB: Lambertian point light with hard shadows plus ambient, auto exposure, gamma."""
    to_light = scene.light - points
    dist = np.maximum(np.linalg.norm(to_light, axis=1), 1e-6)
    lambert = np.clip(np.einsum("ij,ij->i", normals, to_light) / dist, 0.0, None)
    lit = np.flatnonzero((lambert > 0) & hit)
    occluders = scene.shapes if scene.occluders is None else [scene.shapes[i] for i in scene.occluders]
    if occluders and len(lit):
        shadowed = blocked(occluders, points[lit] + SHADOW_OFFSET * normals[lit], scene.light)
        lambert[lit[shadowed]] *= 0.15
    irradiance = scene.light_power * lambert / (1 + (dist / 3.0) ** 2)
    linear = albedo * (scene.ambient + irradiance[:, None] * scene.light_colour[None, :])
    linear[~hit] = 0.0
    exposure = np.percentile(linear.max(axis=1), 98) + 1e-6
    rgb = 255 * np.clip(linear / exposure, 0, 1) ** (1 / 2.2)
    if rng is not None and noise > 0:
        rgb = rgb + rng.normal(0, noise, rgb.shape)
    return np.clip(np.round(rgb), 0, 255).astype(np.uint8)


def semantic_boundaries(instances: np.ndarray, depth: np.ndarray) -> np.ndarray:
    """uint8 (H, W), 255 on 1-pixel-wide boundaries: for every pair of 4-neighbours of different
    instances (hence also every class change), the nearer pixel of the two (the occluding side;
    the left/upper one on ties) is marked."""
    key = np.where(depth > 0, depth, np.inf)
    edges = np.zeros(instances.shape, bool)
    for axis in (0, 1):
        a = [slice(None)] * 2
        b = [slice(None)] * 2
        a[axis], b[axis] = slice(None, -1), slice(1, None)
        a, b = tuple(a), tuple(b)
        differ = instances[a] != instances[b]
        first_nearer = key[a] <= key[b]
        edges[a] |= differ & first_nearer
        edges[b] |= differ & ~first_nearer
    return edges.astype(np.uint8) * 255


# ---------------------------------------------------------------------- random scenes


@dataclass
class _Room:
    """The floor plan [x0, x1] x [y0, y1] (metres), the ceiling height and whether there is a ceiling."""

    x0: float
    x1: float
    y0: float
    y1: float
    height: float
    ceiling: bool


def _colour(rng: np.random.Generator, sat: tuple[float, float], val: tuple[float, float]) -> np.ndarray:
    """A linear-RGB albedo from a random hue and the given saturation and value ranges."""
    r, g, b = colorsys.hsv_to_rgb(rng.uniform(0, 1), rng.uniform(*sat), rng.uniform(*val))
    return np.array([r, g, b]) ** 2.2 * 0.9 + 0.02


def _material(rng: np.random.Generator, colour: np.ndarray, kinds: Sequence[str], strength: tuple[float, float],
              scale: tuple[float, float]) -> Material:
    """A material of ``colour`` with a random texture among ``kinds``."""
    waves = np.zeros((3, 4))
    first = np.array([1.0, 0.0, 0.0]) if rng.random() < 0.5 else np.array([0.0, 1.0, 0.0])
    waves[0, :3] = first                                      # planks run along an axis of the frame
    waves[1:, :3] = rng.normal(size=(2, 3))
    waves[1:, :3] /= np.linalg.norm(waves[1:, :3], axis=1, keepdims=True)
    waves[1, :3] = np.cross(first, [0.0, 0.0, 1.0]) if rng.random() < 0.7 else waves[1, :3]
    waves[:, 3] = rng.uniform(0, 2 * math.pi, 3)
    return Material(colour=colour, texture=str(rng.choice(list(kinds))), scale=float(rng.uniform(*scale)),
                    strength=float(rng.uniform(*strength)), waves=waves)


def _object_material(rng: np.random.Generator) -> Material:
    """Colours and textures shared by every object class."""
    return _material(rng, _colour(rng, (0.1, 0.85), (0.25, 0.95)), ("plain", "plain", "blotch", "stripes", "checker"),
                     (0.1, 0.45), (0.08, 0.3))


def _room_shapes(rng: np.random.Generator, room: _Room) -> list[Shape]:
    """Floor, four walls (inward normals) and, if the room has one, the ceiling; instances 1..6."""
    floor = _material(rng, _colour(rng, (0.1, 0.6), (0.2, 0.8)), ("stripes", "stripes", "checker", "blotch", "plain"),
                      (0.15, 0.45), (0.15, 0.6))
    wall_colour = _colour(rng, (0.0, 0.45), (0.45, 0.97))
    shapes: list[Shape] = [Plane(FLOOR, 1, floor, (0, 0, 1), 0.0)]
    if room.ceiling:
        ceiling = _material(rng, _colour(rng, (0.0, 0.15), (0.7, 0.97)), ("plain", "checker"), (0.05, 0.2), (0.5, 1.0))
        shapes.append(Plane(CEILING, 2, ceiling, (0, 0, -1), -room.height))
    kinds = ("plain", "plain", "blotch", "stripes") if rng.random() < 0.7 else ("plain",)
    walls = (((1, 0, 0), room.x0), ((-1, 0, 0), -room.x1), ((0, 1, 0), room.y0), ((0, -1, 0), -room.y1))
    for k, (normal, offset) in enumerate(walls):
        material = _material(rng, wall_colour * rng.uniform(0.85, 1.12, 3), kinds, (0.03, 0.25), (0.2, 0.8))
        shapes.append(Plane(WALL, 3 + k, material, normal, offset))
    return shapes


@dataclass
class _Placer:
    """Where objects stand: footprints on the floor and the tops other objects may stand on."""

    room: _Room
    camera_xy: np.ndarray
    yaw: float
    half_fov: float
    rng: np.random.Generator
    footprints: list[tuple[np.ndarray, float]] = field(default_factory=list)
    supports: list[Box] = field(default_factory=list)

    def floor_spot(self, radius: float) -> Optional[np.ndarray]:
        """A free spot on the floor, roughly in view, for a footprint of ``radius``; None if none found."""
        r = self.room
        for _ in range(40):
            angle = self.yaw + self.rng.uniform(-1.15, 1.15) * self.half_fov
            xy = self.camera_xy + self.rng.uniform(1.0, 3.8) * np.array([math.sin(angle), math.cos(angle)])
            inside = r.x0 + radius < xy[0] < r.x1 - radius and r.y0 + radius < xy[1] < r.y1 - radius
            clear = all(np.linalg.norm(xy - c) > radius + cr + 0.05 for c, cr in self.footprints)
            if inside and clear and np.linalg.norm(xy - self.camera_xy) > radius + 0.45:
                self.footprints.append((xy, radius))
                return xy
        return None


def _add_box(p: _Placer, shapes: list[Shape], instance: int) -> bool:
    """A box on the floor, axis-aligned or yawed; False if there was no room for it."""
    rng = p.rng
    half = np.array([rng.uniform(0.15, 0.55), rng.uniform(0.15, 0.55), rng.uniform(0.12, 0.5)])
    xy = p.floor_spot(float(np.hypot(half[0], half[1])))
    if xy is None:
        return False
    yaw = 0.0 if rng.random() < 0.4 else rng.uniform(-math.pi / 4, math.pi / 4)
    box = Box(BOX, instance, _object_material(rng), (xy[0], xy[1], half[2]), half, yaw)
    shapes.append(box)
    p.supports.append(box)
    return True


def _add_sphere(p: _Placer, shapes: list[Shape], instance: int) -> bool:
    """A ball resting on the floor."""
    radius = p.rng.uniform(0.14, 0.45)
    xy = p.floor_spot(radius)
    if xy is None:
        return False
    shapes.append(Sphere(SPHERE, instance, _object_material(p.rng), (xy[0], xy[1], radius), radius))
    return True


def _add_table(p: _Placer, shapes: list[Shape], instance: int) -> bool:
    """A table: a top slab on four legs (five boxes of one instance); its top is a support."""
    rng = p.rng
    length, width, height = rng.uniform(0.8, 1.5), rng.uniform(0.5, 0.9), rng.uniform(0.65, 0.8)
    thick, leg = rng.uniform(0.03, 0.06), rng.uniform(0.04, 0.08)
    xy = p.floor_spot(0.5 * math.hypot(length, width))
    if xy is None:
        return False
    yaw = 0.0 if rng.random() < 0.5 else rng.uniform(-math.pi / 2, math.pi / 2)
    colour = _colour(rng, (0.1, 0.7), (0.2, 0.8))
    material = _material(rng, colour, ("stripes", "stripes", "plain", "blotch"), (0.1, 0.35), (0.06, 0.2))
    top = Box(TABLE, instance, material, (xy[0], xy[1], height - thick / 2), (length / 2, width / 2, thick / 2), yaw)
    shapes.append(top)
    c, s = math.cos(yaw), math.sin(yaw)
    inset_x, inset_y = length / 2 - leg / 2 - 0.04, width / 2 - leg / 2 - 0.04
    for sx, sy in ((-1, -1), (-1, 1), (1, -1), (1, 1)):
        lx, ly = sx * inset_x, sy * inset_y
        centre = (xy[0] + c * lx - s * ly, xy[1] + s * lx + c * ly, (height - thick) / 2)
        shapes.append(Box(TABLE, instance, material, centre, (leg / 2, leg / 2, (height - thick) / 2), yaw))
    p.supports.append(top)
    return True


def _add_stacked(p: _Placer, shapes: list[Shape], instance: int) -> bool:
    """A smaller box or a ball standing on top of a box or a table."""
    rng = p.rng
    if not p.supports:
        return False
    base = p.supports[int(rng.integers(len(p.supports)))]
    if base.top > 1.6:
        return False
    p.supports.remove(base)                       # one object on each top: nothing interpenetrates
    room_xy = base.half[:2] * 0.85
    yaw = base.yaw
    headroom = (2.05 - base.top) / 2              # tops stay below 2.05 m, under the light
    if rng.random() < 0.6:
        half = np.array([rng.uniform(0.08, room_xy[0]), rng.uniform(0.08, room_xy[1]),
                         rng.uniform(0.08, min(0.35, headroom))])
        half[:2] = np.minimum(half[:2], room_xy)
        slack = np.maximum(base.half[:2] - half[:2], 0)
        local = np.append(rng.uniform(-slack, slack) * 0.8, 0.0)
        xy = base.centre + base.to_world @ local
        box = Box(BOX, instance, _object_material(rng), (xy[0], xy[1], base.top + half[2]), half,
                  yaw + rng.uniform(-0.3, 0.3))
        shapes.append(box)
        p.supports.append(box)
        return True
    radius = rng.uniform(0.06, max(0.07, min(0.3, headroom, float(room_xy.min()))))
    slack = np.maximum(base.half[:2] - radius, 0)
    xy = base.centre + base.to_world @ np.append(rng.uniform(-slack, slack) * 0.8, 0.0)
    shapes.append(Sphere(SPHERE, instance, _object_material(rng), (xy[0], xy[1], base.top + radius), radius))
    return True


def _free_distance(room: _Room, xy: np.ndarray, yaw: float) -> float:
    """How far the floor plan lets one walk from ``xy`` in the direction ``yaw`` before a wall."""
    direction = (math.sin(yaw), math.cos(yaw))
    steps = []
    for k, (lo, hi) in enumerate(((room.x0, room.x1), (room.y0, room.y1))):
        if abs(direction[k]) > 1e-9:
            steps.append(((hi if direction[k] > 0 else lo) - xy[k]) / direction[k])
    return min(steps)


def random_scene(rng: np.random.Generator, width: int, height: int) -> tuple[Scene, Camera]:
    """A random room, camera, light and 2-6 objects."""
    room_w, room_l = rng.uniform(3.5, 6.5), rng.uniform(4.5, 7.5)
    x0 = -room_w * rng.uniform(0.3, 0.7)
    room = _Room(x0, x0 + room_w, 0.0, room_l, rng.uniform(2.4, 3.1), rng.random() < 0.75)
    cam_xy = np.array([rng.uniform(room.x0 + 0.5, room.x1 - 0.5), rng.uniform(0.3, 1.2)])
    for _ in range(10):                           # not staring at a wall from up close
        yaw = rng.uniform(-0.7, 0.7)
        if _free_distance(room, cam_xy, yaw) > 2.5:
            break
    pitch = rng.uniform(math.radians(3), math.radians(30))
    camera = Camera.looking(width, height, (cam_xy[0], cam_xy[1], rng.uniform(1.0, 1.7)), yaw, pitch)
    shapes = _room_shapes(rng, room)
    first_object = len(shapes)
    placer = _Placer(room, cam_xy, yaw, math.atan2(width / 2, camera.fx), rng)
    wanted, instance, tables = int(rng.integers(2, 7)), 7, 0
    for _ in range(4 * wanted):
        if instance - 7 >= wanted:
            break
        roll = rng.random()
        if roll < 0.25 and placer.supports:
            added = _add_stacked(placer, shapes, instance)
        elif roll < 0.45 and tables < 2:
            added = _add_table(placer, shapes, instance)
            tables += added
        elif roll < 0.72:
            added = _add_sphere(placer, shapes, instance)
        else:
            added = _add_box(placer, shapes, instance)
        instance += added
    top = room.height - 0.15 if room.ceiling else rng.uniform(2.2, 2.8)
    light = np.array([rng.uniform(room.x0 + 0.3, room.x1 - 0.3), rng.uniform(0.3, room.y1 - 0.3), top])
    tint = np.array([1.0, 1.0, 1.0]) + rng.uniform(-0.08, 0.08) * np.array([1.0, 0.0, -1.0])
    scene = Scene(shapes, light, tint, float(rng.uniform(2.0, 3.5)), float(rng.uniform(0.25, 0.5)),
                  occluders=list(range(first_object, len(shapes))))
    return scene, camera


# ---------------------------------------------------------------------- files


def class_info_yaml() -> str:
    """The class list as a class_info YAML file (labels stored 1..N, 0 = void)."""
    lines = ["# Class list of the synthetic indoor scenes (platform data demo --task scenes).",
             "# segmentation/*.png store class id + 1: values 1..N are the classes below in order and 0 is",
             "# void (a ray that hit nothing), hence reduce_zero_label: stored 0 is ignored, 1..N -> classes 0..N-1.",
             "dataset: synthetic indoor scenes",
             "names: [" + ", ".join(NAMES) + "]", "palette:"]
    lines += [f"  - [{r}, {g}, {b}]   # {n}" for n, (r, g, b) in zip(NAMES, PALETTE)]
    lines += ["ignore_index: 255", "reduce_zero_label: true"]
    return "\n".join(lines) + "\n"


def camera_yaml(width: int, height: int) -> str:
    """The intrinsics shared by every image and the conventions of the files, as YAML."""
    k = intrinsics(width, height)
    notes = [
        "# Pinhole camera of the synthetic indoor scenes (platform data demo --task scenes), the same for every image.",
        "# Camera coordinates (OpenCV): x right, y down, z forward, metres. Pixel (u, v) = (column, row) has its",
        "# centre at integer coordinates; a point (X, Y, Z) projects to u = fx * X / Z + cx, v = fy * Y / Z + cy.",
        "# depth/<stem>.npy: float32 Z (distance along the optical axis, as NYUD-v2 depth; not the ray length)",
        "#   of the surface seen at each pixel centre, in metres; 0 where the ray hit nothing.",
        "# normals/<stem>.png: RGB = round((n + 1) / 2 * 255) of the unit surface normal n in camera coordinates,",
        "#   facing the camera (n . ray < 0); (0, 0, 0) where the ray hit nothing.",
        "# edge/<stem>.png: 255 on 1-pixel-wide semantic boundaries (class or object changes between",
        "#   4-neighbours; the nearer pixel of the pair is marked), 0 elsewhere.",
        "# segmentation/<stem>.png: class id + 1 (classes.yaml), 0 = void.",
    ]
    values = [f"fx: {k['fx']}", f"fy: {k['fy']}", f"cx: {k['cx']}", f"cy: {k['cy']}",
              f"width: {k['width']}", f"height: {k['height']}"]
    return "\n".join(notes + values) + "\n"


def encode_normals(normals: np.ndarray) -> np.ndarray:
    """(H, W, 3) unit normals -> uint8 RGB round((n + 1) / 2 * 255); (0, 0, 0) where the normal is zero."""
    rgb = np.round((normals + 1) / 2 * 255).clip(0, 255).astype(np.uint8)
    rgb[~np.any(normals != 0, axis=-1)] = 0
    return rgb


def _write(path: Path, array: np.ndarray, params: Sequence[int] = ()) -> None:
    if not cv2.imwrite(str(path), array, list(params)):
        raise OSError(f"cannot write {path}")


def write_sample(root: Path, stem: str, r: Rendering) -> None:
    """The five files of one image under ``root``."""
    _write(root / "images" / f"{stem}.jpg", r.image[:, :, ::-1], (cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY))
    _write(root / "segmentation" / f"{stem}.png", (r.classes + 1).astype(np.uint8))
    np.save(root / "depth" / f"{stem}.npy", r.depth.astype(np.float32))
    _write(root / "normals" / f"{stem}.png", encode_normals(r.normals)[:, :, ::-1])
    _write(root / "edge" / f"{stem}.png", r.edges)


def make_scenes_demo(out_dir: str | Path, num_train: int = 200, num_val: int = 50,
                     image_size: tuple[int, int] = (160, 120), seed: int = 0, progress: bool = True) -> dict:
    """Render the synthetic indoor set in the NYUD-v2 multi-task layout under ``out_dir``.

    Args:
        out_dir: dataset root (created); an earlier demo set there is replaced.
        num_train / num_val: number of images in the train / val splits (stems 000000... train first).
        image_size: ``(width, height)`` in pixels.
        seed: every file is a function of it (each image has its own RNG stream).
        progress: print progress lines.

    Returns:
        A summary: ``root``, ``image_size`` ([W, H]), ``train_images``, ``val_images``, ``classes``,
        ``objects`` (object instances in all), ``void_pixels``, ``class_pixels`` ({name: count}), ``seconds``.
    """
    start = time.time()
    w, h = int(image_size[0]), int(image_size[1])
    if w < 32 or h < 24:
        raise ValueError(f"image_size (width, height) too small: {image_size}")
    if num_train < 0 or num_val < 0:
        raise ValueError("num_train and num_val must be >= 0")
    root = Path(out_dir)
    for sub in ("images", "segmentation", "depth", "normals", "edge", "gt_sets"):
        (root / sub).mkdir(parents=True, exist_ok=True)
        for stale in (root / sub).glob("??????.*"):  # an earlier, larger set: its extra files would linger
            if stale.stem.isdigit():
                stale.unlink()
    pixels = np.zeros(len(NAMES) + 1, np.int64)
    objects, number = 0, 0
    for split_code, (split, count) in enumerate((("train", num_train), ("val", num_val))):
        stems = []
        for i in range(count):
            rng = np.random.default_rng([seed, split_code, i])
            scene, camera = random_scene(rng, w, h)
            rendering = render_scene(scene, camera, rng, noise=float(rng.uniform(1.5, 4.0)))
            stem = f"{number:06d}"
            write_sample(root, stem, rendering)
            stems.append(stem)
            number += 1
            objects += len({s.instance for s in scene.shapes if s.class_id not in (FLOOR, WALL, CEILING)})
            pixels += np.bincount(rendering.classes.ravel() + 1, minlength=len(NAMES) + 1)
            if progress and ((i + 1) % 50 == 0 or i + 1 == count):
                print(f"[scenes demo] {split}: {i + 1}/{count} images", flush=True)
        (root / "gt_sets" / f"{split}.txt").write_text("".join(f"{s}\n" for s in stems))
    (root / "classes.yaml").write_text(class_info_yaml())
    (root / "camera.yaml").write_text(camera_yaml(w, h))
    seconds = round(time.time() - start, 2)
    if progress:
        print(f"[scenes demo] wrote {num_train}+{num_val} images ({w}x{h}) in NYUD-v2 layout to {root} "
              f"in {seconds:.1f}s", flush=True)
    return {"root": str(root), "image_size": [w, h], "train_images": num_train, "val_images": num_val,
            "classes": len(NAMES), "objects": objects, "void_pixels": int(pixels[0]),
            "class_pixels": {n: int(c) for n, c in zip(NAMES, pixels[1:])}, "seconds": seconds}
