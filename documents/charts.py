"""The annual report's charts as PNG, for the .docx: the same SVG charts the HTML report shows
(rules.annual_report.charts, one definition) drawn with Pillow. They use a small part of SVG
(rect, line, text with fill, stroke, font-size, text-anchor and font-weight; no transforms,
paths or styles); anything else is refused by name, so a chart changed beyond that part fails
loudly here instead of rendering wrong.

Chinese needs a CJK font: Noto Sans CJK (Debian's fonts-noto-cjk, which
scripts/ensure-libreoffice.sh installs for the tests), WenQuanYi Micro Hei (fonts-wqy-microhei,
5 MB, in the worker image), or the file named by DUCHA_CJK_FONT."""

from __future__ import annotations

import io
import os
import xml.etree.ElementTree as ET
from functools import cache
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

SVG = "{http://www.w3.org/2000/svg}"
SCALE = 3  # pixels per SVG unit: a 560-unit chart is 1680 px, sharp at 150 mm wide in print
FONT_FILES = (
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Bold.ttc",
    "/usr/share/fonts/truetype/noto/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/noto-cjk/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/google-noto-cjk/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",  # fonts-wqy-microhei (5 MB): the worker image's
)
SC_INDEX = 2  # in NotoSansCJK-*.ttc: JP, KR, SC, TC, HK; the Simplified Chinese face


class ChartError(RuntimeError):
    """A chart cannot be drawn (no CJK font, or SVG outside the supported part)."""


def font_file(bold: bool = False) -> Path:
    named = os.environ.get("DUCHA_CJK_FONT")
    if named:
        if not Path(named).is_file():
            raise ChartError(f"DUCHA_CJK_FONT: 没有这个字体文件 / no such font file {named}")
        return Path(named)
    for f in FONT_FILES:
        if bold and "Regular" in f and Path(f.replace("Regular", "Bold")).is_file():
            return Path(f.replace("Regular", "Bold"))
        if Path(f).is_file():
            return Path(f)
    raise ChartError("缺少中文字体，无法绘制图表 / no CJK font for the charts: install Debian's fonts-noto-cjk "
                     "(sh scripts/ensure-libreoffice.sh) or set DUCHA_CJK_FONT to a .ttf/.ttc file")


@cache
def _font(size_px: int, bold: bool) -> ImageFont.FreeTypeFont:
    path = font_file(bold)
    index = SC_INDEX if path.name.startswith("NotoSansCJK") else 0
    try:
        return ImageFont.truetype(str(path), size_px, index=index)
    except OSError:
        return ImageFont.truetype(str(path), size_px)


def _color(value: str | None) -> str | None:
    if value in (None, "none", "transparent"):
        return None
    return value


def _num(el: ET.Element, name: str, default: float = 0.0) -> float:
    v = el.get(name)
    return float(v) if v is not None else default


def svg_to_png(svg: str, scale: int = SCALE) -> bytes:
    """Rasterise one chart SVG (the supported part) to PNG bytes on a white background."""
    try:
        root = ET.fromstring(svg)
    except ET.ParseError as exc:
        raise ChartError(f"图表 SVG 无法解析 / chart SVG does not parse: {exc}") from None
    if root.tag != SVG + "svg" and root.tag != "svg":
        raise ChartError(f"不是 SVG / not an svg element: {root.tag}")
    width, height = _num(root, "width"), _num(root, "height")
    if width <= 0 or height <= 0:
        raise ChartError("图表缺少宽度或高度 / chart has no width or height")
    img = Image.new("RGB", (round(width * scale), round(height * scale)), "white")
    draw = ImageDraw.Draw(img)
    for el in root:
        tag = el.tag.removeprefix(SVG)
        if tag == "rect":
            x, y, w, h = (_num(el, k) * scale for k in ("x", "y", "width", "height"))
            if w > 0 and h > 0:
                draw.rectangle([x, y, x + w - 1, y + h - 1], fill=_color(el.get("fill", "black")),
                               outline=_color(el.get("stroke")))
        elif tag == "line":
            x1, y1, x2, y2 = (_num(el, k) * scale for k in ("x1", "y1", "x2", "y2"))
            draw.line([x1, y1, x2, y2], fill=_color(el.get("stroke")) or "black",
                      width=max(1, round(_num(el, "stroke-width", 1) * scale)))
        elif tag == "text":
            size = round(_num(el, "font-size", 12) * scale)
            font = _font(size, el.get("font-weight") == "bold")
            anchor = {"start": "ls", "middle": "ms", "end": "rs"}.get(el.get("text-anchor", "start"), "ls")
            draw.text((_num(el, "x") * scale, _num(el, "y") * scale), el.text or "", font=font,
                      fill=_color(el.get("fill")) or "black", anchor=anchor)
        else:
            raise ChartError(f"图表含不支持的 SVG 元素 / unsupported SVG element <{tag}> in a chart")
    out = io.BytesIO()
    img.save(out, "PNG", optimize=True)
    return out.getvalue()


def chart_title(svg: str) -> str:
    """A chart's title (its aria-label)."""
    return ET.fromstring(svg).get("aria-label", "")
