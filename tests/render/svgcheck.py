"""Checks on an SVG drawing from `ncd render`: it parses as XML, its root is
<svg>, and no text overlaps another element.

Text extents are estimated from the font size and the characters (Graphviz's
SVG does not record them); an estimate errs on the small side and boxes are
shrunk by a small tolerance, so a reported overlap is a real one. Text turned
a quarter (a top-to-bottom drawing's wire labels) is turned with its box. Checked:
text against text of other nodes, edges and clusters, and edge or cluster
labels against the boxes of nodes.
"""

import re
import xml.etree.ElementTree as ET

SVG = "{http://www.w3.org/2000/svg}"
TOLERANCE = 1.0  # points each side

# Advance widths in em of Helvetica-like fonts, on the small side.
NARROW = set("iljtfrI.,:;'!|()[]{} ")
WIDE = set("mwMW@%")


def char_width(c):
    if c in NARROW:
        return 0.28
    if c in WIDE:
        return 0.8
    if c.isupper() or c.isdigit():
        return 0.6
    if ord(c) > 0x2000:
        return 0.6
    return 0.5


def text_box(element):
    size = float(element.get("font-size", "14"))
    x = float(element.get("x", "0"))
    y = float(element.get("y", "0"))
    content = "".join(element.itertext())
    width = sum(char_width(c) for c in content) * size
    anchor = element.get("text-anchor", "start")
    if anchor == "middle":
        x -= width / 2
    elif anchor == "end":
        x -= width
    box = [x + TOLERANCE, y - 0.7 * size + TOLERANCE, x + width - TOLERANCE, y + 0.15 * size - TOLERANCE]
    turn = ROTATE.fullmatch(element.get("transform", "").strip())
    if element.get("transform") and not turn:
        raise ValueError("text %r has a transform this check cannot read: %r" % (content, element.get("transform")))
    if turn:
        # A quarter turn about (cx, cy): (cx + u, cy + v) goes to (cx - v, cy + u) clockwise
        # (90) and to (cx + v, cy - u) anticlockwise (-90).
        angle, cx, cy = float(turn.group(1)), float(turn.group(2)), float(turn.group(3))
        u0, v0, u1, v1 = box[0] - cx, box[1] - cy, box[2] - cx, box[3] - cy
        if angle == 90:
            box = [cx - v1, cy + u0, cx - v0, cy + u1]
        elif angle == -90:
            box = [cx + v0, cy - u1, cx + v1, cy - u0]
        else:
            raise ValueError("text %r is turned %g degrees; this check reads quarter turns only" % (content, angle))
    return box, content


ROTATE = re.compile(r"rotate\((-?\d+(?:\.\d+)?)[ ,]+(-?\d+(?:\.\d+)?)[ ,]+(-?\d+(?:\.\d+)?)\)")
NUMBER_PAIR = re.compile(r"(-?\d+(?:\.\d+)?),(-?\d+(?:\.\d+)?)")


def shape_box(group):
    xs, ys = [], []
    for element in group.iter():
        tag = element.tag.replace(SVG, "")
        data = element.get("points") if tag in ("polygon", "polyline") else element.get("d") if tag == "path" else None
        if not data:
            continue
        if element.get("fill") in (None, "none", "transparent") and element.get("stroke") in (None, "transparent"):
            continue
        for x, y in NUMBER_PAIR.findall(data):
            xs.append(float(x))
            ys.append(float(y))
    if not xs:
        return None
    return [min(xs) + 2, min(ys) + 2, max(xs) - 2, max(ys) - 2]


def overlap(a, b):
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def check_svg(data):
    """Returns a list of problems (empty when the SVG is fine)."""
    try:
        root = ET.fromstring(data)
    except ET.ParseError as error:
        return ["not well-formed XML: %s" % error]
    if root.tag != SVG + "svg":
        return ["root element is %s, not svg" % root.tag]
    problems = []
    texts = []  # (box, content, owner, kind)
    node_boxes = []  # (box, owner)
    for index, group in enumerate(root.iter(SVG + "g")):
        kind = group.get("class")
        if kind not in ("node", "edge", "cluster"):
            continue
        title = group.find(SVG + "title")
        owner = "%s %s" % (kind, title.text if title is not None else index)
        for element in group.findall(SVG + "text"):
            box, content = text_box(element)
            if content.strip():
                texts.append((box, content, owner, kind))
        if kind == "node":
            box = shape_box(group)
            if box:
                node_boxes.append((box, owner))
    texts.sort(key=lambda item: item[0][0])
    for i, (box, content, owner, _) in enumerate(texts):
        for other_box, other_content, other_owner, _ in texts[i + 1:]:
            if other_box[0] >= box[2]:
                break
            if owner != other_owner and overlap(box, other_box):
                problems.append("text %r of %s overlaps text %r of %s" % (content, owner, other_content, other_owner))
    for box, content, owner, kind in texts:
        if kind == "node":
            continue
        for node_box, node_owner in node_boxes:
            if overlap(box, node_box):
                problems.append("label %r of %s overlaps %s" % (content, owner, node_owner))
    return problems
