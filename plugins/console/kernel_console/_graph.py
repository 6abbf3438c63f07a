"""The plugin dependency graph as an SVG drawn on the server: one column per dependency depth."""

from __future__ import annotations

from collections.abc import Sequence

import attrs

from ._html import Safe, h, join

NODE_W, NODE_H, GAP_X, GAP_Y, PAD = 150, 42, 70, 18, 14


@attrs.frozen
class Node:
    """One enabled plugin: its name, version, boot position and the enabled plugins it starts after."""

    name: str
    version: str
    order: int
    requires: tuple[str, ...]
    optional: tuple[str, ...]


def _depths(nodes: Sequence[Node]) -> dict[str, int]:
    """Longest chain of dependencies under each plugin (nodes come in load order: deps first)."""
    depth: dict[str, int] = {}
    for n in nodes:
        deps = [depth[d] for d in (*n.requires, *n.optional) if d in depth]
        depth[n.name] = 1 + max(deps) if deps else 0
    return depth


def dependency_svg(nodes: Sequence[Node]) -> Safe:
    """An SVG of ``nodes``: boxes (name, version, boot position) and arrows from each to what it needs.

    Solid arrows are ``requires``, dashed ones ``optional`` dependencies that are enabled.
    """
    depth = _depths(nodes)
    columns: dict[int, list[Node]] = {}
    for n in nodes:
        columns.setdefault(depth[n.name], []).append(n)
    pos: dict[str, tuple[int, int]] = {}
    for col, members in columns.items():
        for row, n in enumerate(members):
            pos[n.name] = (PAD + col * (NODE_W + GAP_X), PAD + row * (NODE_H + GAP_Y))
    width = PAD * 2 + max(columns, default=0) * (NODE_W + GAP_X) + NODE_W
    height = PAD * 2 + max((len(m) for m in columns.values()), default=1) * (NODE_H + GAP_Y) - GAP_Y
    edges: list[Safe] = []
    for n in nodes:
        x, y = pos[n.name]
        for dep in (*n.requires, *n.optional):
            if dep not in pos:
                continue
            dx, dy = pos[dep]
            edges.append(
                h(
                    '<line x1="{x1}" y1="{y1}" x2="{x2}" y2="{y2}" stroke="#67708a" stroke-width="1.4" '
                    '{dash} marker-end="url(#arrow)"><title>{title}</title></line>',
                    x1=x,
                    y1=y + NODE_H // 2,
                    x2=dx + NODE_W + 2,
                    y2=dy + NODE_H // 2,
                    dash=Safe('stroke-dasharray="5 4"' if dep in n.optional else ""),
                    title=f"{n.name} {'optionally uses' if dep in n.optional else 'requires'} {dep}",
                )
            )
    boxes = [
        h(
            '<g class="node"><rect x="{x}" y="{y}" width="{w}" height="{hh}" rx="6" fill="#eef1f5" '
            'stroke="#1d2330"/><text x="{tx}" y="{ty}" font-size="13" font-weight="600">{name}</text>'
            '<text x="{tx}" y="{ty2}" font-size="11" fill="#4a5368">v{version} · boot #{order}</text></g>',
            x=pos[n.name][0],
            y=pos[n.name][1],
            w=NODE_W,
            hh=NODE_H,
            tx=pos[n.name][0] + 8,
            ty=pos[n.name][1] + 17,
            ty2=pos[n.name][1] + 33,
            name=n.name,
            version=n.version,
            order=n.order,
        )
        for n in nodes
    ]
    return h(
        '<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{hh}" viewBox="0 0 {w} {hh}" '
        'role="img" aria-label="plugin dependency graph" font-family="system-ui, sans-serif">'
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" '
        'orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z" fill="#67708a"/></marker></defs>'
        "{edges}{boxes}</svg>",
        w=width,
        hh=height,
        edges=join(edges),
        boxes=join(boxes),
    )
