"""The graphs part of the book: flows on networks and their description length
(``chapters/graphs``)."""

from kexue.graphs.infomap import find_modules, flow, map_equation

__all__: list[str] = ["find_modules", "flow", "map_equation"]
