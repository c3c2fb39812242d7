"""What an H.264 sequence parameter set says about the picture (ITU-T H.264 section 7.3.2.1.1).

A recorder that copies a camera's stream does not choose its size: the SPS in front of
each keyframe says it. `picture_format(sps_nal)` reads the fields that make two streams
incompatible in one segment (profile, chroma format, bit depth, and the displayed size,
after frame cropping), so a camera that changes its resolution mid-stream starts a new
segment, and each segment's header can state its real size.
"""
from __future__ import annotations

from typing import NamedTuple

from .annexb import NAL_SPS, nal_units

# profile_idc values whose SPS carries chroma_format_idc, bit depths and scaling lists
_HIGH_PROFILES = frozenset((100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135))


class PictureFormat(NamedTuple):
    profile_idc: int
    chroma_format_idc: int
    bit_depth: int
    width: int
    height: int


class _Bits:
    """Reads bits MSB first from an RBSP (emulation prevention bytes already removed)."""

    __slots__ = ("_data", "_pos")

    def __init__(self, data: bytes):
        self._data = data
        self._pos = 0

    def u(self, n: int) -> int:
        value = 0
        for _ in range(n):
            byte = self._pos >> 3
            if byte >= len(self._data):
                raise ValueError("the SPS ends early")
            value = (value << 1) | ((self._data[byte] >> (7 - (self._pos & 7))) & 1)
            self._pos += 1
        return value

    def ue(self) -> int:
        zeros = 0
        while self.u(1) == 0:
            zeros += 1
            if zeros > 31:
                raise ValueError("an Exp-Golomb code in the SPS is too long")
        return (1 << zeros) - 1 + self.u(zeros)

    def se(self) -> int:
        k = self.ue()
        return (k + 1) // 2 if k & 1 else -(k // 2)


def rbsp(nal: bytes) -> bytes:
    """The NAL unit's payload with emulation prevention bytes (00 00 03) removed."""
    return nal.replace(b"\x00\x00\x03", b"\x00\x00")


def _skip_scaling_list(bits: _Bits, size: int) -> None:
    last = next_scale = 8
    for _ in range(size):
        if next_scale != 0:
            next_scale = (last + bits.se() + 256) % 256
        last = next_scale or last


def picture_format(sps_nal: bytes) -> PictureFormat:
    """Parse an SPS NAL unit (header byte included, no start code). ValueError if malformed."""
    if not sps_nal or sps_nal[0] & 0x1F != NAL_SPS:
        raise ValueError("not an SPS NAL unit")
    bits = _Bits(rbsp(sps_nal[1:]))
    profile = bits.u(8)
    bits.u(8)                                   # constraint flags
    bits.u(8)                                   # level_idc
    bits.ue()                                   # seq_parameter_set_id
    chroma, separate_planes, bit_depth = 1, 0, 8
    if profile in _HIGH_PROFILES:
        chroma = bits.ue()
        if chroma == 3:
            separate_planes = bits.u(1)
        bit_depth = 8 + bits.ue()
        bits.ue()                               # bit_depth_chroma_minus8
        bits.u(1)                               # qpprime_y_zero_transform_bypass_flag
        if bits.u(1):                           # seq_scaling_matrix_present_flag
            for i in range(8 if chroma != 3 else 12):
                if bits.u(1):
                    _skip_scaling_list(bits, 16 if i < 6 else 64)
    bits.ue()                                   # log2_max_frame_num_minus4
    poc_type = bits.ue()
    if poc_type == 0:
        bits.ue()                               # log2_max_pic_order_cnt_lsb_minus4
    elif poc_type == 1:
        bits.u(1)
        bits.se()
        bits.se()
        for _ in range(bits.ue()):
            bits.se()
    bits.ue()                                   # max_num_ref_frames
    bits.u(1)                                   # gaps_in_frame_num_value_allowed_flag
    width_mbs = bits.ue() + 1
    height_units = bits.ue() + 1
    frame_mbs_only = bits.u(1)
    if not frame_mbs_only:
        bits.u(1)                               # mb_adaptive_frame_field_flag
    bits.u(1)                                   # direct_8x8_inference_flag
    width = width_mbs * 16
    height = (2 - frame_mbs_only) * height_units * 16
    if bits.u(1):                               # frame_cropping_flag
        left, right, top, bottom = bits.ue(), bits.ue(), bits.ue(), bits.ue()
        array_type = 0 if separate_planes else chroma
        sub_width = 2 if array_type in (1, 2) else 1
        sub_height = 2 if array_type == 1 else 1
        width -= sub_width * (left + right)
        height -= sub_height * (2 - frame_mbs_only) * (top + bottom)
    if width <= 0 or height <= 0:
        raise ValueError(f"the SPS describes an empty picture ({width}x{height})")
    return PictureFormat(profile, chroma, bit_depth, width, height)


def access_unit_format(data: bytes) -> PictureFormat | None:
    """The format of the last SPS in an access unit (Annex-B), or None if it has none or it is unreadable."""
    sps = [nal for nal_type, nal in nal_units(data) if nal_type == NAL_SPS]
    if not sps:
        return None
    try:
        return picture_format(sps[-1])
    except ValueError:
        return None
