"""The synthetic world: images of coloured shapes, deterministic from (seed, index), with their ground truth.

One scene holds one or more objects. Each object has a shape, a colour, a size, a cell of a 3x3 grid and a pixel box,
so every task can be generated from the same world: a caption, a class (the shape), a box with a referring
expression, and questions about colour, count and position.

>>> scene = make_scene(seed=0, index=7)
>>> caption(scene)             # doctest: +SKIP
'A large red circle at the top left.'

Nothing here imports torch; rendering uses PIL only.
"""

import random
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageDraw

SHAPES = ("circle", "square", "triangle")
COLOURS = {"red": (220, 40, 40), "green": (40, 170, 60), "blue": (40, 80, 220), "yellow": (230, 200, 30)}
SIZES = {"small": 0.24, "large": 0.42}  # object width as a fraction of the image width
# 3x3 grid cells, row-major, and how a caption says where an object is.
POSITIONS = ("top left", "top", "top right", "left", "center", "right", "bottom left", "bottom", "bottom right")
POSITION_PHRASES = {
    "top left": "at the top left", "top": "at the top", "top right": "at the top right",
    "left": "on the left", "center": "in the center", "right": "on the right",
    "bottom left": "at the bottom left", "bottom": "at the bottom", "bottom right": "at the bottom right",
}


@dataclass(frozen=True)
class Thing:
    shape: str
    colour: str
    size: str
    position: str
    box: tuple[int, int, int, int]  # x1, y1, x2, y2 in pixels, x2/y2 exclusive

    @property
    def name(self) -> str:
        return f"{self.size} {self.colour} {self.shape}"


@dataclass
class Scene:
    seed: int
    index: int
    width: int
    height: int
    background: tuple[int, int, int]
    things: list[Thing] = field(default_factory=list)

    @property
    def id(self) -> str:
        return f"syn-{self.seed}-{self.index:06d}"

    def render(self) -> Image.Image:
        # A pale background whose red rises from left to right and whose blue falls from top to bottom: like the sky
        # and the ground of a photograph, it tells every patch where it is, which Qwen's relative (rotary) position
        # codes alone tell a small model only slowly.
        x = np.linspace(-1, 1, self.width)[None, :]
        y = np.linspace(-1, 1, self.height)[:, None]
        r, g, b = self.background
        pixels = np.stack(np.broadcast_arrays(r + 12 * x, g + 0 * x * y, b - 12 * y), axis=-1)
        image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB")
        draw = ImageDraw.Draw(image)
        for thing in self.things:
            x1, y1, x2, y2 = thing.box
            rgb = COLOURS[thing.colour]
            if thing.shape == "circle":
                draw.ellipse((x1, y1, x2 - 1, y2 - 1), fill=rgb)
            elif thing.shape == "square":
                draw.rectangle((x1, y1, x2 - 1, y2 - 1), fill=rgb)
            else:
                draw.polygon([((x1 + x2) / 2, y1), (x2 - 1, y2 - 1), (x1, y2 - 1)], fill=rgb)
        return image


def make_scene(seed: int, index: int, image_size: int = 112, n_things: int = 1) -> Scene:
    """Scene number `index` of the world `seed`: the same arguments always give the same scene."""
    if not 1 <= n_things <= len(POSITIONS):
        raise ValueError(f"n_things must be between 1 and {len(POSITIONS)}, got {n_things}")
    rng = random.Random(seed * 1_000_003 + index)
    background = tuple(rng.randint(222, 240) for _ in range(3))
    cells = rng.sample(range(len(POSITIONS)), n_things)
    things = []
    for cell in cells:
        size = rng.choice(tuple(SIZES))
        side = round(SIZES[size] * image_size * rng.uniform(0.9, 1.1))
        row, col = divmod(cell, 3)
        # Centre of the cell, jittered a little, then the box clamped inside the image.
        cx = (col + 0.5) * image_size / 3 + rng.uniform(-0.05, 0.05) * image_size
        cy = (row + 0.5) * image_size / 3 + rng.uniform(-0.05, 0.05) * image_size
        x1 = min(max(round(cx - side / 2), 0), image_size - side)
        y1 = min(max(round(cy - side / 2), 0), image_size - side)
        things.append(Thing(rng.choice(SHAPES), rng.choice(tuple(COLOURS)), size, POSITIONS[cell],
                            (x1, y1, x1 + side, y1 + side)))
    return Scene(seed, index, image_size, image_size, background, things)


def caption(scene: Scene) -> str:
    """One sentence naming every object, e.g. 'A large red circle at the top left.'"""
    parts = [f"a {t.name} {POSITION_PHRASES[t.position]}" for t in scene.things]
    text = parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]
    return text[0].upper() + text[1:] + "."


def attribute_questions(scene: Scene) -> list[tuple[str, str]]:
    """Short questions about a one-object scene: what a base model 'knows' before any fine-tuning."""
    if len(scene.things) != 1:
        raise ValueError("attribute questions are asked about one-object scenes")
    thing = scene.things[0]
    return [
        ("What colour is the shape?", thing.colour),
        ("What shape is it?", thing.shape),
        ("Is the shape small or large?", thing.size),
        ("Where is the shape?", thing.position),
    ]


def caption_records(n: int, seed: int = 0, image_size: int = 112):
    """n caption records {"id", "image" (PIL), "caption"} of one-object scenes."""
    for index in range(n):
        scene = make_scene(seed, index, image_size)
        yield {"id": scene.id, "image": scene.render(), "caption": caption(scene)}
