"""The synthetic world: images of coloured shapes, deterministic from (seed, index), with their ground truth.

One scene holds one or more objects. Each object has a shape, a colour, a size, a quarter of the image and a pixel
box, so every task comes from the same world: a caption, a class (its size and shape), a box with a
referring expression ('the red circle'), and questions about colour, shape, size and position.

>>> caption(make_scene(seed=0, index=0))
'A small yellow square at the bottom right.'

Nothing here imports torch; rendering uses PIL only.
"""

import random
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageDraw

SHAPES = ("circle", "square", "triangle")
COLOURS = {"red": (220, 40, 40), "green": (40, 170, 60), "blue": (40, 80, 220), "yellow": (230, 200, 30)}
SIZES = {"small": 0.22, "large": 0.42}  # object width as a fraction of the image width
# The image's quarters, row-major. An object sits near the middle of its quarter, which lines it up with the 2 x 2
# image tokens (28 x 28 pixels each) that cover a quarter of a 112-pixel image: a small model learns shapes in a few
# hundred steps that way, and not at all in that many when objects may sit anywhere.
POSITIONS = ("top left", "top right", "bottom left", "bottom right")


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
        pixels = np.stack(np.broadcast_arrays(r + 20 * x, g + 0 * x * y, b - 20 * y), axis=-1)
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
    background = (232, rng.randint(220, 245), 232)  # green varies; red and blue carry the position gradient
    cells = rng.sample(range(len(POSITIONS)), n_things)
    things = []
    for cell in cells:
        size = rng.choice(tuple(SIZES))
        side = round(SIZES[size] * image_size * rng.uniform(0.95, 1.05))
        row, col = divmod(cell, 2)
        # Centre of the quarter, jittered by a few pixels.
        cx = (col + 0.5) * image_size / 2 + rng.uniform(-0.02, 0.02) * image_size
        cy = (row + 0.5) * image_size / 2 + rng.uniform(-0.02, 0.02) * image_size
        x1 = min(max(round(cx - side / 2), 0), image_size - side)
        y1 = min(max(round(cy - side / 2), 0), image_size - side)
        things.append(Thing(rng.choice(SHAPES), rng.choice(tuple(COLOURS)), size, POSITIONS[cell],
                            (x1, y1, x1 + side, y1 + side)))
    return Scene(seed, index, image_size, image_size, background, things)


def caption(scene: Scene) -> str:
    """One sentence naming every object, e.g. 'A large red circle at the top left.'"""
    parts = [f"a {t.name} at the {t.position}" for t in scene.things]
    text = parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]
    return text[0].upper() + text[1:] + "."


def caption_records(n: int, seed: int = 0, image_size: int = 112):
    """n caption records {"id", "image" (PIL), "caption"} of one-object scenes."""
    for index in range(n):
        scene = make_scene(seed, index, image_size)
        yield {"id": scene.id, "image": scene.render(), "caption": caption(scene)}


def class_name(thing: Thing) -> str:
    """The classification task's class: size and shape, 'small circle' ... 'large triangle' (six classes). A base
    model pretrained on this world sees both, but has never answered with the pair, which is what fine-tuning
    teaches, as it teaches a user's own label set."""
    return f"{thing.size} {thing.shape}"


CLASSES = tuple(f"{size} {shape}" for size in SIZES for shape in SHAPES)


def classification_records(n: int, seed: int = 0, image_size: int = 112):
    """n records {"id", "image", "label"}: the class of a one-object scene's object."""
    for index in range(n):
        scene = make_scene(seed, index, image_size)
        yield {"id": scene.id, "image": scene.render(), "label": class_name(scene.things[0])}


def grounding_records(n: int, seed: int = 0, image_size: int = 112):
    """n records {"id", "image", "expression", "box", "width", "height"}: where 'the red circle' is."""
    for index in range(n):
        scene = make_scene(seed, index, image_size)
        thing = scene.things[0]
        yield {"id": scene.id, "image": scene.render(), "expression": f"the {thing.colour} {thing.shape}",
               "box": thing.box, "width": scene.width, "height": scene.height}


VQA_QUESTIONS = {
    "colour": "What colour is the shape?",
    "shape": "Which shape is it?",
    "size": "Is the shape small or large?",
    "position": "In which corner is the shape?",
}


def vqa_records(n: int, seed: int = 0, image_size: int = 112):
    """n records {"id", "image", "question", "answers"}: one question about a one-object scene, ten equal answers
    (the official VQA files have ten human answers per question)."""
    for index in range(n):
        scene = make_scene(seed, index, image_size)
        thing = scene.things[0]
        attribute = tuple(VQA_QUESTIONS)[index % len(VQA_QUESTIONS)]
        yield {"id": scene.id, "image": scene.render(), "question": VQA_QUESTIONS[attribute],
               "answers": [getattr(thing, attribute)] * 10}
