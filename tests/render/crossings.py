"""Wire crossings of an SVG drawing from `ncd render`, read from its geometry.

The same count for both layouts: every <g class="edge"> path (Graphviz's
cubic Bézier splines are flattened, ncd's orthogonal polylines are taken as
they are) is a chain of segments, and two wires cross where a segment of one
properly intersects a segment of the other. Wires that share a node (a bundle
fanning out of one tensor, wires into one glyph) are not counted against each
other, so only crossings between unrelated wires count.

Standard library only.
"""

import re
import xml.etree.ElementTree as ET

import svgcheck  # shape_box: a node's drawn extent

SVG = "{http://www.w3.org/2000/svg}"
TOKEN = re.compile(r"[MCLQZmclqz]|-?\d+(?:\.\d+)?(?:e-?\d+)?")
CELL = 40.0


def path_points(data):
    """Points of a path: M, L and C commands (curves sampled at 8 points)."""
    tokens = TOKEN.findall(data)
    points = []
    command = None
    numbers = []

    def flush():
        if command in ("M", "L"):
            for k in range(0, len(numbers) - 1, 2):
                points.append((numbers[k], numbers[k + 1]))
        elif command == "C" and points:
            for k in range(0, len(numbers) - 5, 6):
                p0 = points[-1]
                p1, p2, p3 = (numbers[k], numbers[k + 1]), (numbers[k + 2], numbers[k + 3]), (numbers[k + 4], numbers[k + 5])
                for step in range(1, 9):
                    t = step / 8.0
                    u = 1 - t
                    points.append((u * u * u * p0[0] + 3 * u * u * t * p1[0] + 3 * u * t * t * p2[0] + t * t * t * p3[0],
                                   u * u * u * p0[1] + 3 * u * u * t * p1[1] + 3 * u * t * t * p2[1] + t * t * t * p3[1]))

    for token in tokens:
        if token.isalpha():
            flush()
            command = token.upper()
            numbers = []
        else:
            numbers.append(float(token))
    flush()
    return points


def endpoints(title):
    """The two node names of an edge title `a:port:e->b:port:w`."""
    if "->" not in title:
        return None
    left, right = title.split("->", 1)
    return left.split(":")[0], right.split(":")[0]


def orientation(a, b, c):
    value = (b[0] - a[0]) * (c[1] - a[1]) - (b[1] - a[1]) * (c[0] - a[0])
    if abs(value) < 1e-6:
        return 0
    return 1 if value > 0 else -1


def proper(a, b, c, d):
    return (orientation(a, b, c) * orientation(a, b, d) < 0) and (orientation(c, d, a) * orientation(c, d, b) < 0)


def count_crossings(data):
    root = ET.fromstring(data)
    wires = []  # (nodes, segments)
    for group in root.iter(SVG + "g"):
        if group.get("class") != "edge":
            continue
        title = group.find(SVG + "title")
        ends = endpoints(title.text if title is not None and title.text else "")
        if not ends:
            continue
        for path in group.findall(SVG + "path"):
            points = path_points(path.get("d", ""))
            segments = [(points[k], points[k + 1]) for k in range(len(points) - 1) if points[k] != points[k + 1]]
            wires.append((set(ends), segments))
    grid = {}
    for index, (_, segments) in enumerate(wires):
        for s, (a, b) in enumerate(segments):
            x0, x1 = sorted((a[0], b[0]))
            y0, y1 = sorted((a[1], b[1]))
            for gx in range(int(x0 // CELL), int(x1 // CELL) + 1):
                for gy in range(int(y0 // CELL), int(y1 // CELL) + 1):
                    grid.setdefault((gx, gy), []).append((index, s))
    seen = set()
    crossings = 0
    for cell in grid.values():
        for i in range(len(cell)):
            wi, si = cell[i]
            for j in range(i + 1, len(cell)):
                wj, sj = cell[j]
                if wi == wj:
                    continue
                key = (wi, si, wj, sj) if wi < wj else (wj, sj, wi, si)
                if key in seen:
                    continue
                seen.add(key)
                if wires[wi][0] & wires[wj][0]:
                    continue
                a, b = wires[wi][1][si]
                c, d = wires[wj][1][sj]
                if proper(a, b, c, d):
                    crossings += 1
    return crossings


def segment_enters(a, b, box):
    """Whether segment a-b passes through the inside of box [x0, y0, x1, y1] (Liang-Barsky)."""
    t0, t1 = 0.0, 1.0
    dx, dy = b[0] - a[0], b[1] - a[1]
    for p, q in ((-dx, a[0] - box[0]), (dx, box[2] - a[0]), (-dy, a[1] - box[1]), (dy, box[3] - a[1])):
        if p == 0:
            if q <= 0:
                return False
            continue
        t = q / p
        if p < 0:
            t0 = max(t0, t)
        else:
            t1 = min(t1, t)
    return t1 - t0 > 1e-9


def count_hidden(data):
    """Wires running behind a box: (wire, node) pairs where a wire passes through the inside of a
    node it neither starts nor ends at (the node's drawn extent, 2 px in from each side)."""
    root = ET.fromstring(data)
    nodes = []  # (name, box)
    wires = []  # (ends, segments)
    for group in root.iter(SVG + "g"):
        kind = group.get("class")
        title = group.find(SVG + "title")
        text = title.text if title is not None and title.text else ""
        if kind == "node":
            # A box narrower than 4 px (a paper-style call strip) has nothing inside.
            box = svgcheck.shape_box(group)
            if box and box[2] > box[0] and box[3] > box[1]:
                nodes.append((text, box))
        elif kind == "edge":
            ends = endpoints(text)
            if not ends:
                continue
            for path in group.findall(SVG + "path"):
                points = path_points(path.get("d", ""))
                wires.append((set(ends), [(points[k], points[k + 1]) for k in range(len(points) - 1)]))
    hidden = 0
    for ends, segments in wires:
        for name, box in nodes:
            if name not in ends and any(segment_enters(a, b, box) for a, b in segments):
                hidden += 1
    return hidden
