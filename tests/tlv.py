"""A TLV tree of a BER/DER encoding, mutated at the element level and re-encoded (for fuzzing).

Byte flips mostly break a length and are refused at the first header; mutating
the tree and re-encoding with correct lengths reaches the code behind it:
missing, extra, empty or retagged fields, BER indefinite lengths and
constructed strings where DER has primitive ones.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

from hypothesis import strategies as st

from gateway.core import der


@dataclass
class Node:
    tag: int
    value: bytes | list[Node] = field(default_factory=list)
    indefinite: bool = False

    def walk(self) -> list[tuple[Node | None, int, Node]]:
        """(parent, index in parent, node) for this node and every descendant, in document order."""
        out: list[tuple[Node | None, int, Node]] = [(None, 0, self)]
        stack = [self]
        while stack:
            node = stack.pop()
            if isinstance(node.value, list):
                for i, child in enumerate(node.value):
                    out.append((node, i, child))
                for child in reversed(node.value):
                    stack.append(child)
        return out


def parse(buf: bytes) -> Node:
    walk = der.Walk(buf, budget=10**9)

    def node(tlv: der.Tlv) -> Node:
        if tlv.constructed:
            return Node(tlv.tag, [node(c) for c in walk.children(tlv)], tlv.content_end != tlv.end)
        return Node(tlv.tag, bytes(buf[tlv.content_start : tlv.content_end]))

    return node(walk.top())


def _length(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    body = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(body)]) + body


def encode(node: Node) -> bytes:
    if isinstance(node.value, list):
        content = b"".join(encode(c) for c in node.value)
        if node.indefinite and node.tag & 0x20:
            return bytes([node.tag, 0x80]) + content + b"\x00\x00"
    else:
        content = node.value
    return bytes([node.tag]) + _length(len(content)) + content


INTERESTING_TAGS = [0x02, 0x04, 0x05, 0x06, 0x0C, 0x13, 0x17, 0x24, 0x30, 0x31, 0x80, 0x81, 0xA0, 0xA1, 0xA2, 0x00]
INTERESTING_VALUES = [b"", b"\x00", b"\xff", b"\x80", b"\xff" * 9, b"\xc3\x28", b"\x2a\x86\x48", b"\x00" * 40]
OPERATIONS = ["drop", "duplicate", "empty", "retag", "indefinite", "chunk", "swap", "value", "nest"]


@st.composite
def mutated_tree(draw: st.DrawFn, original: bytes, max_mutations: int = 4) -> bytes:
    """``original`` with one to ``max_mutations`` element-level mutations, re-encoded."""
    root = copy.deepcopy(parse(original))
    for _ in range(draw(st.integers(1, max_mutations))):
        nodes = root.walk()
        parent, index, node = nodes[draw(st.integers(0, len(nodes) - 1))]
        op = draw(st.sampled_from(OPERATIONS))
        siblings = parent.value if parent is not None and isinstance(parent.value, list) else None
        if op == "drop" and siblings is not None:
            del siblings[index]
        elif op == "duplicate" and siblings is not None:
            siblings.insert(index, copy.deepcopy(node))
        elif op == "swap" and siblings is not None and len(siblings) > 1:
            other = draw(st.integers(0, len(siblings) - 1))
            siblings[index], siblings[other] = siblings[other], siblings[index]
        elif op == "empty":
            node.value = [] if isinstance(node.value, list) else b""
        elif op == "retag":
            node.tag = draw(st.sampled_from(INTERESTING_TAGS))
            if isinstance(node.value, list) and not node.tag & 0x20:
                node.value = encode(Node(0x30, node.value))[2:]  # keep the bytes, now primitive
        elif op == "indefinite" and isinstance(node.value, list):
            node.indefinite = True
        elif op == "chunk" and isinstance(node.value, bytes) and node.tag in (0x04, 0x80):
            # A BER constructed OCTET STRING (X.690 8.7.3), as streaming producers write it.
            value, size = node.value, draw(st.integers(1, 64))
            pieces = [Node(0x04, value[i : i + size]) for i in range(0, len(value), size)]
            node.tag, node.value, node.indefinite = node.tag | 0x20, pieces, draw(st.booleans())
        elif op == "value" and isinstance(node.value, bytes):
            node.value = draw(st.sampled_from(INTERESTING_VALUES))
        elif op == "nest":
            wrapper = Node(node.tag | 0x20 if node.tag & 0x20 else 0x30, [copy.deepcopy(node)], draw(st.booleans()))
            if siblings is not None:
                siblings[index] = wrapper
    return encode(root)


def at(node: Node, *path: int) -> Node:
    """The descendant reached by child indices, e.g. ``at(root, 1, 0)`` for a ContentInfo's content."""
    for i in path:
        assert isinstance(node.value, list), f"element {node.tag:#x} is primitive"
        node = node.value[i]
    return node


def reshaped(original: bytes, change) -> bytes:
    """``original`` parsed, changed in place by ``change(root)``, and re-encoded."""
    root = parse(original)
    change(root)
    return encode(root)
