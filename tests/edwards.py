"""A slow, plainly written model of edwards25519 and edwards448 (RFC 8032 §5.1, §5.2), for tests.

It derives the points of small order, and every string that encodes one of them, from the curve
equations alone: nothing here is copied from ``oauth_shield._keys``, which keeps only the list of
their y-coordinates. Affine coordinates and the complete addition law (``d`` is not a square on
either curve, and ``a`` is), so no special case is needed for the identity or for doubling.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

Point = tuple[int, int]
IDENTITY: Point = (0, 1)


@dataclass(frozen=True)
class Curve:
    name: str
    p: int
    a: int
    d: int
    size: int
    """Length of an encoded point, in bytes."""
    order: int
    """``L``, the prime order of the base point."""
    cofactor: int

    @property
    def sign_bit(self) -> int:
        return 8 * self.size - 1

    def on_curve(self, point: Point) -> bool:
        x, y = point
        return (self.a * x * x + y * y - 1 - self.d * x * x * y * y) % self.p == 0

    def add(self, first: Point, second: Point) -> Point:
        (x1, y1), (x2, y2), p = first, second, self.p
        t = self.d * x1 * x2 * y1 * y2 % p
        x3 = (x1 * y2 + y1 * x2) * pow(1 + t, -1, p) % p
        y3 = (y1 * y2 - self.a * x1 * x2) * pow(1 - t, -1, p) % p
        return x3, y3

    def multiply(self, scalar: int, point: Point) -> Point:
        result = IDENTITY
        while scalar:
            if scalar & 1:
                result = self.add(result, point)
            point = self.add(point, point)
            scalar >>= 1
        return result

    def x_for(self, y: int) -> int | None:
        """A root x of the curve equation for ``y`` (the other is ``-x``), or ``None``."""
        p = self.p
        u = (1 - y * y) * pow(self.a - self.d * y * y, -1, p) % p
        if p % 4 == 3:
            root = pow(u, (p + 1) // 4, p)
        else:  # p = 5 (mod 8): RFC 8032 §5.1.3, step 3
            root = pow(u, (p + 3) // 8, p)
            if root * root % p != u:
                root = root * pow(2, (p - 1) // 4, p) % p
        return root if root * root % p == u else None

    def decode(self, data: bytes) -> Point | None:
        """RFC 8032 §5.1.3 / §5.2.3, strictly: ``None`` for anything that is not a point."""
        if len(data) != self.size:
            return None
        number = int.from_bytes(data, "little")
        sign, y = number >> self.sign_bit, number & ((1 << self.sign_bit) - 1)
        x = self.x_for(y) if y < self.p else None
        if x is None or (x == 0 and sign):
            return None
        return (self.p - x if x & 1 != sign else x), y

    def encode(self, point: Point) -> bytes:
        x, y = point
        return (y | (x & 1) << self.sign_bit).to_bytes(self.size, "little")

    def encodings(self, point: Point) -> set[bytes]:
        """Every string a lenient decoder (one that reduces y modulo p and takes the sign bit
        of x = 0 as it comes) reads as ``point``: the canonical one and the others."""
        x, y = point
        signs = (0, 1) if x == 0 else (x & 1,)
        found = set()
        while y < 1 << self.sign_bit:
            found.update(
                (y | sign << self.sign_bit).to_bytes(self.size, "little") for sign in signs
            )
            y += self.p
        return found

    def a_point(self, start: int) -> Point:
        """Some point of the curve, found from y = start upwards."""
        y = start
        while (x := self.x_for(y)) is None:
            y += 1
        return x, y

    @functools.cached_property
    def torsion(self) -> frozenset[Point]:
        """The points of small order: [L]P for points P, closed under addition."""
        points = {IDENTITY}
        start = 2
        while len(points) < self.cofactor:
            point = self.a_point(start)
            start = point[1] + 1
            points.add(self.multiply(self.order, point))
            points |= {self.add(one, two) for one in points for two in points}
        assert all(self.multiply(self.cofactor, point) == IDENTITY for point in points)
        return frozenset(points)

    @functools.cached_property
    def small_order_encodings(self) -> frozenset[bytes]:
        return frozenset(data for point in self.torsion for data in self.encodings(point))

    def is_small_order(self, data: bytes) -> bool:
        """Whether a lenient decoder reads ``data`` as a point of small order."""
        number = int.from_bytes(data, "little") & ((1 << self.sign_bit) - 1)
        return any(number % self.p == y for _, y in self.torsion)


_P25519 = 2**255 - 19
ED25519 = Curve(
    "Ed25519",
    p=_P25519,
    a=-1,
    d=-121665 * pow(121666, -1, _P25519) % _P25519,
    size=32,
    order=2**252 + 27742317777372353535851937790883648493,
    cofactor=8,
)
ED448 = Curve(
    "Ed448",
    p=2**448 - 2**224 - 1,
    a=1,
    d=-39081,
    size=57,
    order=2**446 - 13818066809895115352007386748515426880336692474882178609894547503885,
    cofactor=4,
)
CURVES = {curve.name: curve for curve in (ED25519, ED448)}
