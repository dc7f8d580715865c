"""Draw TickDesk's application icon with QPainter and write resources/icons/.

    python installer/make_icon.py          (from the repo root, with the venv active)

Writes ``tickdesk.png`` (256 px, the window icon on Linux and in docs), ``tickdesk-32.png``
and ``tickdesk.ico`` (16..256 px, the Windows executable, installer and shortcuts).  Each
size is painted at its own resolution rather than scaled down, so small sizes stay crisp.

The ICO is written here by hand instead of through Qt's ``ico`` image plugin, because that
plugin stores one image per file and Windows picks among several sizes.  Sizes below 256
are stored as 32-bit BMP entries (every Windows tool reads those); 256 as PNG, which is what
Windows expects at that size.  No third-party imaging package is needed.
"""

from __future__ import annotations

import os
import struct
import sys
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from PySide6.QtCore import QBuffer, QByteArray, QIODevice, QPointF, QRectF, Qt  # noqa: E402
from PySide6.QtGui import QColor, QGuiApplication, QImage, QLinearGradient, QPainter, QPainterPath, QPen  # noqa: E402

OUT = Path(__file__).resolve().parent.parent / "resources" / "icons"
ICO_SIZES = (16, 24, 32, 48, 64, 128, 256)

# (open, high, low, close) of four candles on a 0..1 price scale, rising overall.
CANDLES = ((0.22, 0.40, 0.04, 0.34), (0.34, 0.46, 0.16, 0.22), (0.24, 0.70, 0.20, 0.62), (0.60, 0.98, 0.52, 0.90))


def paint(size: int) -> QImage:
    img = QImage(size, size, QImage.Format.Format_ARGB32_Premultiplied)
    img.fill(Qt.GlobalColor.transparent)
    p = QPainter(img)
    p.setRenderHint(QPainter.RenderHint.Antialiasing)
    s = float(size)

    # Rounded dark tile, a slight vertical gradient.
    margin = max(0.5, s * 0.03)
    tile = QRectF(margin, margin, s - 2 * margin, s - 2 * margin)
    grad = QLinearGradient(0, 0, 0, s)
    grad.setColorAt(0.0, QColor("#1f3a5f"))
    grad.setColorAt(1.0, QColor("#0d1b2a"))
    p.setPen(Qt.PenStyle.NoPen)
    p.setBrush(grad)
    p.drawRoundedRect(tile, s * 0.18, s * 0.18)

    # Chart area inside the tile.
    left, right = s * 0.14, s * 0.86
    top, bottom = s * 0.15, s * 0.85

    def y(v: float) -> float:
        return bottom - v * (bottom - top)

    slot = (right - left) / len(CANDLES)
    body_w = max(2.0, slot * 0.6)
    wick_w = max(1.0, s / 48)

    # A moving-average line behind the candles.
    if size >= 24:
        path = QPainterPath(QPointF(left, y(0.20)))
        for i, (o, _h, _l, c) in enumerate(CANDLES):
            path.lineTo(QPointF(left + slot * (i + 0.5), y((o + c) / 2)))
        p.setBrush(Qt.BrushStyle.NoBrush)
        p.setPen(QPen(QColor("#f5c542"), max(1.0, s / 36), Qt.PenStyle.SolidLine, Qt.PenCapStyle.RoundCap, Qt.PenJoinStyle.RoundJoin))
        p.drawPath(path)
    for i, (o, h, lo, c) in enumerate(CANDLES):
        cx = left + slot * (i + 0.5)
        color = QColor("#26c281") if c >= o else QColor("#e74c3c")
        p.setPen(QPen(color, wick_w, Qt.PenStyle.SolidLine, Qt.PenCapStyle.FlatCap))
        p.drawLine(QPointF(cx, y(h)), QPointF(cx, y(lo)))
        p.setPen(Qt.PenStyle.NoPen)
        p.setBrush(color)
        y0, y1 = sorted((y(o), y(c)))
        p.drawRect(QRectF(cx - body_w / 2, y0, body_w, max(1.0, y1 - y0)))
    p.end()
    return img


def png_bytes(img: QImage) -> bytes:
    data = QByteArray()
    buf = QBuffer(data)
    buf.open(QIODevice.OpenModeFlag.WriteOnly)
    if not img.save(buf, "PNG"):
        raise RuntimeError("PNG encoding failed")
    return bytes(data)


def bmp_entry(img: QImage) -> bytes:
    """A 32-bit ICO DIB: BITMAPINFOHEADER (height doubled for the mask), BGRA rows bottom-up,
    then the 1-bit AND mask (set where fully transparent, for old renderers)."""
    img = img.convertToFormat(QImage.Format.Format_ARGB32)  # straight alpha, BGRA in memory
    w, h = img.width(), img.height()
    rows = []
    for row in range(h):
        line = bytes(img.constScanLine(row))[: w * 4]
        rows.append(line)
    xor = b"".join(reversed(rows))
    mask_stride = ((w + 31) // 32) * 4
    mask_rows = []
    for line in reversed(rows):
        bits = bytearray(mask_stride)
        for x in range(w):
            if line[x * 4 + 3] == 0:
                bits[x // 8] |= 0x80 >> (x % 8)
        mask_rows.append(bytes(bits))
    and_mask = b"".join(mask_rows)
    header = struct.pack("<IiiHHIIiiII", 40, w, h * 2, 1, 32, 0, len(xor) + len(and_mask), 0, 0, 0, 0)
    return header + xor + and_mask


def ico_bytes(images: list[QImage]) -> bytes:
    entries = [(img.width(), png_bytes(img) if img.width() >= 256 else bmp_entry(img)) for img in images]
    out = struct.pack("<HHH", 0, 1, len(entries))
    offset = 6 + 16 * len(entries)
    blobs = []
    for size, blob in entries:
        dim = 0 if size >= 256 else size  # 0 means 256 in an ICONDIRENTRY
        out += struct.pack("<BBBBHHII", dim, dim, 0, 0, 1, 32, len(blob), offset)
        offset += len(blob)
        blobs.append(blob)
    return out + b"".join(blobs)


def main() -> int:
    app = QGuiApplication.instance() or QGuiApplication(sys.argv[:1])  # fonts/painting need one
    OUT.mkdir(parents=True, exist_ok=True)
    images = [paint(n) for n in ICO_SIZES]
    (OUT / "tickdesk.png").write_bytes(png_bytes(images[-1]))
    (OUT / "tickdesk-32.png").write_bytes(png_bytes(images[ICO_SIZES.index(32)]))
    (OUT / "tickdesk.ico").write_bytes(ico_bytes(images))
    for name in ("tickdesk.png", "tickdesk-32.png", "tickdesk.ico"):
        print(f"wrote {OUT / name} ({(OUT / name).stat().st_size} bytes)")
    del app
    return 0


if __name__ == "__main__":
    sys.exit(main())
