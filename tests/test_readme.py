"""README.md and README.zh-CN.md say the same thing: the same commands, in the same sections, each linking the other.

The Chinese README is for the readers of the Chinese tutorials this project replaces; its commands are not translated,
so every fenced code block is the English one byte for byte, and its headings map one to one onto the English ones
(an added English section fails here until it is translated).
"""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ENGLISH, CHINESE = ROOT / "README.md", ROOT / "README.zh-CN.md"
CJK = re.compile(r"[\u4e00-\u9fff]")


def split(path: Path) -> tuple[list[str], list[str]]:
    """(fenced code blocks, fences included; the lines outside them) of a Markdown file."""
    blocks, prose, current = [], [], None
    for line in path.read_text(encoding="utf-8").splitlines(keepends=True):
        if current is None and line.startswith("```"):
            current = [line]
        elif current is not None:
            current.append(line)
            if line.rstrip("\n") == "```":
                blocks.append("".join(current))
                current = None
        else:
            prose.append(line.rstrip("\n"))
    assert current is None, f"{path.name}: a code block is not closed"
    return blocks, prose


def headings(prose: list[str]) -> list[str]:
    return [line for line in prose if re.match(r"#{1,6} ", line)]


def test_both_readmes_hold_the_same_code_blocks_in_the_same_order():
    english, _ = split(ENGLISH)
    chinese, _ = split(CHINESE)
    assert len(english) >= 10  # the README's commands were found at all
    for number, (en, zh) in enumerate(zip(english, chinese), start=1):
        assert zh == en, f"code block {number} differs: README.md has\n{en}\nREADME.zh-CN.md has\n{zh}"
    assert len(chinese) == len(english), "README.zh-CN.md and README.md have different numbers of code blocks"


def test_the_sections_map_one_to_one_and_are_translated():
    en_headings, zh_headings = headings(split(ENGLISH)[1]), headings(split(CHINESE)[1])
    assert [h.split()[0] for h in zh_headings] == [h.split()[0] for h in en_headings], (
        f"README.md's sections: {en_headings}\nREADME.zh-CN.md's: {zh_headings}")
    untranslated = [h for h in zh_headings if not CJK.search(h)]
    assert not untranslated, f"headings of README.zh-CN.md still in English: {untranslated}"


def test_every_paragraph_of_the_chinese_readme_is_in_chinese():
    """A paragraph pasted in English (outside code blocks and tables) would leave Chinese readers without it."""
    _, prose = split(CHINESE)
    paragraphs = [p for p in "\n".join(prose).split("\n\n") if p.strip()]
    english_only = [p for p in paragraphs if not p.startswith(("|", "[")) and not CJK.search(p)]
    assert len(paragraphs) > 40 and not english_only, english_only


@pytest.mark.parametrize(("path", "link"), [(ENGLISH, "[中文说明](README.zh-CN.md)"), (CHINESE, "[English](README.md)")])
def test_each_readme_links_the_other_near_its_top(path, link):
    top = path.read_text(encoding="utf-8").splitlines()[:5]
    assert link in top, f"{path.name} does not start with the line {link}"
    target = link.rsplit("(", 1)[1].rstrip(")")
    assert (ROOT / target).is_file()
