"""Procedurally drawn pedestrians and cameras for the synthetic re-ID dataset.

An identity is a combination of discrete cues (clothing colours from a small palette, pattern, sleeves, lower
garment, hair, bag, build). Colours alone do not identify a person: look-alikes share the clothing colours of
another identity and differ only in other cues, and every camera changes colours (gain, cast, gamma), background,
viewpoint (which hides or shows the logo and the bag), scale and sharpness. A model has to learn shapes and
combinations of cues that survive the camera change, which is what re-ID training is about.
"""
from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Callable, Dict, List, Sequence, Tuple

import numpy as np
from PIL import Image, ImageChops, ImageDraw, ImageFilter

Color = Tuple[int, int, int]

# Deliberately few, so that several identities share each colour (look-alikes by construction).
CLOTHES = ((200, 30, 35), (35, 60, 170), (25, 25, 30), (235, 235, 230), (125, 125, 130), (40, 130, 60),
           (230, 200, 40), (190, 160, 120))
HAIR = ((20, 15, 10), (90, 55, 25), (215, 185, 110), (165, 165, 160), (150, 60, 20))
SKIN = ((245, 210, 180), (210, 160, 120), (150, 100, 65), (95, 60, 40))
SHOES = ((20, 20, 20), (100, 60, 30), (240, 240, 240))
PATTERNS = ("solid", "hstripes", "vstripes", "checks", "logo")
LOWER_KINDS = ("trousers", "shorts", "skirt")
BAGS = ("none", "backpack", "shoulder")
HEIGHTS = (0.86, 0.93, 1.0)
BUILDS = (0.85, 1.0, 1.18)
VIEWS = ("front", "back", "side")
BACKGROUNDS = ("gradient", "wall_floor", "texture", "fence")
SUPERSAMPLE = 2  # draw at twice the output size, then downsample (anti-aliasing)


@dataclass(frozen=True)
class Identity:
    """The discrete appearance cues of one person (indices into the palettes above)."""

    upper: int
    upper2: int  # second colour of stripes / checks / logo
    pattern: str
    long_sleeves: bool
    lower: int
    lower_kind: str
    shoes: int
    hair: int
    long_hair: bool
    skin: int
    bag: str
    bag_color: int
    height: float
    build: float

    def salient_cues(self) -> List[str]:
        """Cues that clearly change the picture. Shoes, height and build are too small or too confounded with the
        camera's scale to tell two people apart alone, and a second colour shows only with a pattern, a bag
        colour only with a bag."""
        hidden = {"shoes", "height", "build"}
        if self.pattern == "solid":
            hidden.add("upper2")
        if self.bag == "none":
            hidden.add("bag_color")
        return [f.name for f in fields(self) if f.name not in hidden]

    def signature(self) -> tuple:
        """Generated identities have distinct signatures, so any two differ in at least one salient cue."""
        return tuple((name, getattr(self, name)) for name in self.salient_cues())


def _pick(options: Sequence) -> Callable[[np.random.Generator], object]:
    return lambda rng: options[int(rng.integers(len(options)))]


def _index(n: int) -> Callable[[np.random.Generator], int]:
    return lambda rng: int(rng.integers(n))


def _flag(p: float) -> Callable[[np.random.Generator], bool]:
    return lambda rng: bool(rng.random() < p)


_CUE_SAMPLERS: Dict[str, Callable[[np.random.Generator], object]] = {
    "upper": _index(len(CLOTHES)), "upper2": _index(len(CLOTHES)), "pattern": _pick(PATTERNS),
    "long_sleeves": _flag(0.5), "lower": _index(len(CLOTHES)), "lower_kind": _pick(LOWER_KINDS),
    "shoes": _index(len(SHOES)), "hair": _index(len(HAIR)), "long_hair": _flag(0.35), "skin": _index(len(SKIN)),
    "bag": _pick(BAGS), "bag_color": _index(len(CLOTHES)), "height": _pick(HEIGHTS), "build": _pick(BUILDS),
}
_COLOUR_CUES = ("upper", "lower")


def sample_identity(rng: np.random.Generator) -> Identity:
    """A fresh identity with every cue drawn independently (second colour distinct from the first)."""
    ident = Identity(**{name: sample(rng) for name, sample in _CUE_SAMPLERS.items()})
    while ident.upper2 == ident.upper:
        ident = replace(ident, upper2=_CUE_SAMPLERS["upper2"](rng))
    return ident


def sample_lookalike(template: Identity, rng: np.random.Generator, num_changes: int = 2) -> Identity:
    """Same clothing colours as ``template``; ``num_changes`` other salient cues changed to different values."""
    ident = template
    candidates = [c for c in template.salient_cues() if c not in _COLOUR_CUES]
    for name in rng.permutation(candidates)[:num_changes]:
        value = getattr(template, name)
        while value == getattr(template, name) or (name == "upper2" and value == template.upper):
            value = _CUE_SAMPLERS[name](rng)
        ident = replace(ident, **{name: value})
    return ident


@dataclass(frozen=True)
class Camera:
    """Everything a camera does to every picture it takes."""

    gain: float
    cast: Tuple[float, float, float]
    gamma: float
    background: str
    bg_colors: Tuple[Color, Color]
    scale: float  # fraction of the image height a person of height 1.0 spans
    views: Tuple[float, float, float]  # probabilities of front / back / side
    blur: float  # Gaussian blur radius in output pixels
    noise: float  # pixel noise std on the 0..255 scale


def sample_camera(rng: np.random.Generator, dominant_view: int, difficulty: float) -> Camera:
    """A camera whose photometric and geometric shifts grow with ``difficulty`` in [0, 1]."""
    d = difficulty
    views = np.full(3, (0.6 - 0.5 * d) / 2)
    views[dominant_view] = 0.4 + 0.5 * d
    colors = rng.integers(40, 220, size=(2, 3))
    return Camera(
        gain=float(np.exp(rng.uniform(-0.5, 0.5) * d)),
        cast=tuple(float(c) for c in np.exp(rng.normal(0.0, 0.16 * d, 3))),
        gamma=float(np.exp(rng.uniform(-0.3, 0.3) * d)),
        background=BACKGROUNDS[int(rng.integers(len(BACKGROUNDS)))],
        bg_colors=(tuple(int(c) for c in colors[0]), tuple(int(c) for c in colors[1])),
        scale=float(rng.uniform(0.84 - 0.12 * d, 0.94)),
        views=tuple(float(v) for v in views),
        blur=float(rng.uniform(0.0, 0.3 + 0.8 * d)),
        noise=float(rng.uniform(1.0, 2.0 + 6.0 * d)),
    )


# --------------------------------------------------------------------------------------------------------------
# Drawing. Coordinates are canvas pixels; ``u`` is the person's height on the canvas.


def _shade(color: Color, factor: float) -> Color:
    return tuple(int(min(255, max(0, c * factor))) for c in color)


def background(cam: Camera, rng: np.random.Generator, h: int, w: int) -> Image.Image:
    """The camera's scene (fixed kind and colours) with a per-image offset and low-frequency texture; computed at
    half the canvas size (it is smooth) and scaled up."""
    h2, w2 = h // 2, w // 2
    c0, c1 = (np.array(c, dtype=np.float32) for c in cam.bg_colors)
    yy = np.linspace(0.0, 1.0, h2, dtype=np.float32)[:, None]
    xx = np.linspace(0.0, 1.0, w2, dtype=np.float32)[None, :]
    if cam.background == "gradient":
        t = np.broadcast_to(yy, (h2, w2))
    elif cam.background == "wall_floor":
        horizon = 0.62 + rng.uniform(-0.05, 0.05)
        t = np.where(yy < horizon, (np.floor(yy * 14) % 2) * 0.15, 1.0) + 0.0 * xx
    elif cam.background == "fence":
        t = (np.floor(xx * 9 + rng.uniform(0, 1)) % 2) * 0.8 + 0.1 * yy
    else:  # texture
        t = np.zeros((h2, w2), dtype=np.float32)
    coarse = Image.fromarray((rng.random((6, 3)) * 255).astype(np.uint8))
    blob = np.asarray(coarse.resize((w2, h2), Image.BILINEAR), dtype=np.float32) / 255.0
    t = np.clip(t + (0.6 if cam.background == "texture" else 0.25) * (blob - 0.5), 0.0, 1.0)[:, :, None]
    small = Image.fromarray((c0 * (1 - t) + c1 * t).astype(np.uint8))
    return small.resize((w, h), Image.BILINEAR)


def _pattern_mask(pattern: str, shape: Tuple[int, int], origin: Tuple[float, float], u: float) -> Image.Image:
    """Where the second colour of stripes / checks goes, anchored at the person so the fabric moves with the body."""
    h, w = shape
    period = max(2.0, 0.045 * u)
    ys = np.floor((np.arange(h)[:, None] - origin[1]) / period)
    xs = np.floor((np.arange(w)[None, :] - origin[0]) / period)
    if pattern == "hstripes":
        second = ys % 2 == 1
    elif pattern == "vstripes":
        second = xs % 2 == 1
    else:  # checks
        second = (xs + ys) % 2 == 1
    return Image.fromarray(np.broadcast_to(second, (h, w)).astype(np.uint8) * 255)


def _limb(draw: ImageDraw.ImageDraw, start: Tuple[float, float], end: Tuple[float, float], width: float,
          color: Color) -> None:
    draw.line([start, end], fill=color, width=max(1, int(round(width))))
    r = width / 2
    for x, y in (start, end):
        draw.ellipse([x - r, y - r, x + r, y + r], fill=color)


def _lerp(p: Tuple[float, float], q: Tuple[float, float], t: float) -> Tuple[float, float]:
    return p[0] + (q[0] - p[0]) * t, p[1] + (q[1] - p[1]) * t


@dataclass(frozen=True)
class _Pose:
    view: str
    facing: int  # +1 right, -1 left (side view)
    swing: float  # signed limb swing angle in radians
    cx: float
    top: float
    u: float


def _draw_legs(draw: ImageDraw.ImageDraw, ident: Identity, p: _Pose) -> None:
    u, b = p.u, ident.build
    hip_y, foot_y = p.top + 0.50 * u, p.top + 0.96 * u
    spread = 0.045 * u * b if p.view != "side" else 0.01 * u
    lower, skin = CLOTHES[ident.lower], SKIN[ident.skin]
    for side, swing in ((-1, p.swing), (1, -p.swing)):
        hip = (p.cx + side * spread, hip_y)
        reach = (foot_y - hip_y) * (np.sin(swing) if p.view == "side" else 0.15 * np.sin(swing) + 0.04 * side)
        foot = (hip[0] + reach, foot_y)
        far = p.view == "side" and side == -1
        factor = 0.75 if far else 1.0
        knee = _lerp(hip, foot, 0.5)
        width = 0.075 * u * b
        if ident.lower_kind == "trousers":
            _limb(draw, hip, foot, width, _shade(lower, factor))
        else:
            _limb(draw, knee, foot, width * 0.85, _shade(skin, factor))
            if ident.lower_kind == "shorts":
                _limb(draw, hip, knee, width, _shade(lower, factor))
        toe = 0.05 * u * (p.facing if p.view == "side" else 0)
        draw.ellipse([foot[0] - 0.035 * u + min(toe, 0), foot_y - 0.02 * u,
                      foot[0] + 0.035 * u + max(toe, 0), foot_y + 0.025 * u], fill=_shade(SHOES[ident.shoes], factor))
    if ident.lower_kind == "skirt":
        hw = (0.1 if p.view != "side" else 0.07) * u * b
        draw.polygon([(p.cx - hw, hip_y - 0.02 * u), (p.cx + hw, hip_y - 0.02 * u),
                      (p.cx + 1.5 * hw, hip_y + 0.2 * u), (p.cx - 1.5 * hw, hip_y + 0.2 * u)], fill=lower)


def _torso_geometry(ident: Identity, p: _Pose) -> Tuple[float, float, float, float]:
    """Shoulder y, hip y, half shoulder width, half hip width."""
    narrow = 0.55 if p.view == "side" else 1.0
    return (p.top + 0.17 * p.u, p.top + 0.51 * p.u, 0.115 * p.u * ident.build * narrow,
            0.095 * p.u * ident.build * narrow)


def _draw_torso(img: Image.Image, draw: ImageDraw.ImageDraw, ident: Identity, p: _Pose) -> None:
    y_sh, y_hip, sw, hw = _torso_geometry(ident, p)
    poly = [(p.cx - sw, y_sh), (p.cx + sw, y_sh), (p.cx + hw, y_hip), (p.cx - hw, y_hip)]
    draw.polygon(poly, fill=CLOTHES[ident.upper])
    if ident.pattern in ("hstripes", "vstripes", "checks"):
        fabric = _pattern_mask(ident.pattern, (img.size[1], img.size[0]), (p.cx, y_sh), p.u)
        torso = Image.new("L", img.size, 0)
        ImageDraw.Draw(torso).polygon(poly, fill=255)
        img.paste(CLOTHES[ident.upper2], (0, 0, *img.size), ImageChops.multiply(fabric, torso))
    if ident.pattern == "logo" and p.view == "front":
        r, cy = 0.045 * p.u, y_sh + 0.11 * p.u
        draw.rectangle([p.cx - r, cy - r, p.cx + r, cy + r], fill=CLOTHES[ident.upper2])


def _draw_arms(draw: ImageDraw.ImageDraw, ident: Identity, p: _Pose, far: bool) -> None:
    """Front/back: both arms beside the torso; side: the far arm (drawn before the body) or the near one."""
    y_sh, _, sw, _ = _torso_geometry(ident, p)
    u, length, width = p.u, 0.38 * p.u, 0.055 * p.u * ident.build
    if p.view == "side":
        sides = [(0, -p.swing if far else p.swing)]
    elif far:
        return
    else:
        sides = [(-1, p.swing), (1, -p.swing)]
    factor = 0.75 if far else 1.0
    upper, skin = _shade(CLOTHES[ident.upper], factor), _shade(SKIN[ident.skin], factor)
    for side, swing in sides:
        shoulder = (p.cx + side * (sw + 0.02 * u), y_sh + 0.02 * u)
        dx = length * np.sin(swing) if p.view == "side" else side * 0.05 * u
        hand = (shoulder[0] + dx, shoulder[1] + length * (np.cos(swing) if p.view == "side" else 0.97))
        _limb(draw, shoulder, hand, width, skin)
        _limb(draw, shoulder, hand if ident.long_sleeves else _lerp(shoulder, hand, 0.4), width * 1.05, upper)
        r = width * 0.6
        draw.ellipse([hand[0] - r, hand[1] - r, hand[0] + r, hand[1] + r], fill=skin)


def _draw_bag(draw: ImageDraw.ImageDraw, ident: Identity, p: _Pose) -> None:
    """Backpacks fill the back, show as straps from the front and stick out sideways; shoulder bags hang at a hip."""
    if ident.bag == "none":
        return
    y_sh, y_hip, sw, hw = _torso_geometry(ident, p)
    u, color = p.u, CLOTHES[ident.bag_color]
    if ident.bag == "backpack":
        if p.view == "back":
            draw.rounded_rectangle([p.cx - 0.8 * sw, y_sh + 0.03 * u, p.cx + 0.8 * sw, y_sh + 0.26 * u],
                                   radius=0.02 * u, fill=color)
        elif p.view == "front":
            for side in (-1, 1):
                x = p.cx + side * 0.6 * sw
                draw.line([(x, y_sh), (x, y_sh + 0.2 * u)], fill=color, width=max(1, int(0.025 * u)))
        else:
            x0 = p.cx - p.facing * sw
            x1 = x0 - p.facing * 0.09 * u
            draw.rounded_rectangle([min(x0, x1), y_sh + 0.03 * u, max(x0, x1), y_sh + 0.25 * u], radius=0.02 * u,
                                   fill=color)
        return
    side = 1 if p.view != "side" else -p.facing
    strap_w = max(1, int(0.02 * u))
    if p.view != "side":
        draw.line([(p.cx - side * sw, y_sh), (p.cx + side * hw, y_hip - 0.06 * u)], fill=color, width=strap_w)
    x = p.cx + side * (hw if p.view != "side" else 0.3 * hw)
    draw.rectangle([min(x, x + side * 0.09 * u), y_hip - 0.09 * u, max(x, x + side * 0.09 * u), y_hip + 0.05 * u],
                   fill=color)


def _draw_head(draw: ImageDraw.ImageDraw, ident: Identity, p: _Pose) -> None:
    """Front: face with a hair cap; back: hair all over; side: hair on the back half. Long hair reaches the back."""
    u = p.u
    r, cy = 0.065 * u, p.top + 0.075 * u
    cx = p.cx + (0.01 * u * p.facing if p.view == "side" else 0.0)
    skin, hair = SKIN[ident.skin], HAIR[ident.hair]
    box = [cx - r, cy - r * 1.1, cx + r, cy + r * 1.1]
    neck_w = 0.04 * u
    draw.rectangle([p.cx - neck_w / 2, cy + r * 0.8, p.cx + neck_w / 2, p.top + 0.18 * u], fill=skin)
    if ident.long_hair:
        half = r * (1.05 if p.view != "side" else 0.6)
        x_off = -p.facing * 0.4 * r if p.view == "side" else 0.0
        draw.rectangle([cx + x_off - half, cy, cx + x_off + half, cy + (0.17 if p.view == "front" else 0.2) * u],
                       fill=hair)
    draw.ellipse(box, fill=hair if p.view == "back" else skin)
    if p.view == "front":
        draw.chord(box, 180, 360, fill=hair)
    elif p.view == "side":
        start = 90 if p.facing > 0 else 270
        draw.pieslice(box, start, start + 180, fill=hair)
        draw.chord(box, 180, 360, fill=hair)


def _draw_occluder(draw: ImageDraw.ImageDraw, rng: np.random.Generator, h: int, w: int) -> None:
    """A pole, a low obstacle or a box in front of the person."""
    color = tuple(int(c) for c in rng.integers(30, 220, 3))
    kind = int(rng.integers(3))
    if kind == 0:
        x, half = rng.uniform(0.15, 0.85) * w, rng.uniform(0.04, 0.08) * w
        draw.rectangle([x - half, 0, x + half, h], fill=color)
    elif kind == 1:
        draw.rectangle([rng.uniform(-0.5, 0.3) * w, h * (1 - rng.uniform(0.18, 0.38)), rng.uniform(0.7, 1.5) * w, h],
                       fill=color)
    else:
        bw, bh = rng.uniform(0.3, 0.6) * w, rng.uniform(0.15, 0.3) * h
        x, y = rng.uniform(-0.1, 1.1) * w - bw / 2, rng.uniform(0.15, 0.85) * h - bh / 2
        draw.rectangle([x, y, x + bw, y + bh], fill=color)


def apply_camera(img: Image.Image, cam: Camera, rng: np.random.Generator) -> np.ndarray:
    """Gamma, colour cast and gain (with a little per-image light change) as one lookup table, then blur and
    sensor noise."""
    light = np.exp(rng.normal(0.0, 0.06))
    levels = (np.arange(256, dtype=np.float64) / 255.0) ** cam.gamma
    lut = np.concatenate([np.clip(levels * c * cam.gain * light, 0.0, 1.0) for c in cam.cast]) * 255.0 + 0.5
    img = img.point(lut.astype(np.uint8).tolist())
    if cam.blur > 0.05:
        img = img.filter(ImageFilter.GaussianBlur(cam.blur))
    noise = rng.standard_normal((img.size[1], img.size[0], 3), dtype=np.float32) * cam.noise
    return np.clip(np.asarray(img, dtype=np.float32) + noise + 0.5, 0, 255).astype(np.uint8)


def render(ident: Identity, cam: Camera, rng: np.random.Generator, size: Tuple[int, int], difficulty: float,
           partial: bool = False) -> np.ndarray:
    """One (H, W, 3) uint8 picture of ``ident`` seen by ``cam``; ``partial`` = a bad detection (half off-frame)."""
    h, w = size[0] * SUPERSAMPLE, size[1] * SUPERSAMPLE
    d = difficulty
    view = VIEWS[int(rng.choice(3, p=cam.views))]
    u = h * cam.scale * ident.height * rng.uniform(0.95, 1.05)
    jitter = 0.5 + d
    cx = w / 2 + rng.normal(0.0, 0.04 * w * jitter)
    top = (h - u) / 2 + rng.normal(0.0, 0.025 * h * jitter)
    if partial:
        cx += rng.choice([-1, 1]) * rng.uniform(0.35, 0.55) * w
        top += rng.uniform(-0.45, 0.45) * h
    pose = _Pose(view=view, facing=int(rng.choice([-1, 1])), swing=float(rng.uniform(-1, 1) * (0.1 + 0.35 * jitter)),
                 cx=cx, top=top, u=u)
    img = background(cam, rng, h, w)
    draw = _draw_person(img, ident, pose)
    if rng.random() < 0.1 + 0.35 * d:
        _draw_occluder(draw, rng, h, w)
    return apply_camera(img.resize((size[1], size[0]), Image.BILINEAR, reducing_gap=None), cam, rng)


def _draw_person(img: Image.Image, ident: Identity, pose: _Pose) -> ImageDraw.ImageDraw:
    """The person, back to front: far arm, legs, torso, bag, near arm, head."""
    draw = ImageDraw.Draw(img)
    _draw_arms(draw, ident, pose, far=True)
    _draw_legs(draw, ident, pose)
    _draw_torso(img, draw, ident, pose)
    _draw_bag(draw, ident, pose)
    _draw_arms(draw, ident, pose, far=False)
    _draw_head(draw, ident, pose)
    return draw


def render_sprite(ident: Identity, height: int, view: str, facing: int, swing: float) -> Image.Image:
    """The person alone on a transparent canvas (RGBA), ``height`` pixels tall (at ``ident.height`` 1.0), cropped
    to its visible pixels: a walker to paste into a larger scene (tracking frames). ``swing`` is the signed limb
    angle in radians, ``facing`` +1 (right) or -1 (left) for the side view."""
    h = height * SUPERSAMPLE
    w = h * 3 // 4
    u = 0.96 * h * ident.height
    canvas = Image.new("RGBA", (w, h), (0, 0, 0, 0))
    _draw_person(canvas, ident, _Pose(view=view, facing=facing, swing=swing, cx=w / 2, top=h - 1.0 - u, u=u))
    small = canvas.resize((w // SUPERSAMPLE, height), Image.BILINEAR, reducing_gap=None)
    return small.crop(small.getchannel("A").point(lambda a: 255 if a >= 128 else 0).getbbox())
