"""Arabic numerals -> Mandarin readings (cardinals, decimals, digit strings).

Readings follow standard Mandarin:
- cardinals group by 万 (10^4) and 亿 (10^8): 10000 -> 一万, 100010000 -> 一亿零一万,
  10^12 -> 一万亿; a leading 一十 is said 十 (10 -> 十, 100000 -> 十万) but 110 -> 一百一十;
- a 二 that multiplies 千, 万 or 亿 is said 两 (2000 -> 两千, 12000 -> 一万两千), except right
  after 十 or 零 (120000 -> 十二万);
- integers with a leading zero (007) or more than 13 digits (beyond 万亿; such long numbers are
  codes, not amounts) are read digit by digit;
- decimals read the fraction digit by digit: 3.14 -> 三点一四.
"""

import re

DIGITS = "零一二三四五六七八九"
# Phone numbers say 1 as 幺 so it cannot be confused with 七.
PHONE_DIGITS = "零幺二三四五六七八九"
_POSITIONS = ("", "十", "百", "千")
# Longest integer read as a cardinal: 13 digits, up to 9万9999亿9999万9999.
MAX_CARDINAL_DIGITS = 13

_LIANG = re.compile(r"(?<![十零])二(?=[千万亿])")


def read_digits(digits: str, one: str = "一") -> str:
    """Reads a string of ASCII digits one by one ('2024' -> 二零二四); `one` replaces 一 (e.g. 幺)."""
    table = DIGITS if one == "一" else DIGITS.replace("一", one)
    return "".join(table[ord(d) - 48] for d in digits)


def _read_below_10000(n: int) -> str:
    """1..9999 in full form (10 -> 一十), with 零 for inner zeros (1005 -> 一千零五)."""
    parts = []
    pending_zero = False
    for power in (3, 2, 1, 0):
        digit = n // 10**power % 10
        if digit == 0:
            pending_zero = bool(parts)
            continue
        if pending_zero:
            parts.append("零")
            pending_zero = False
        parts.append(DIGITS[digit] + _POSITIONS[power])
    return "".join(parts)


def _read_positive(n: int) -> str:
    """1..10^16-1 in full form, recursing on 亿 then 万."""
    for unit_value, unit_name in ((10**8, "亿"), (10**4, "万")):
        if n >= unit_value:
            high, low = divmod(n, unit_value)
            text = _read_positive(high) + unit_name
            if low:
                # A gap below the unit is said as one 零: 1_0005 -> 一万零五.
                if low < unit_value // 10:
                    text += "零"
                text += _read_positive(low)
            return text
    return _read_below_10000(n)


def read_integer(digits: str) -> str:
    """Reads an unsigned integer string as a Mandarin cardinal (digit by digit if it is a code)."""
    if len(digits) > 1 and digits[0] == "0" or len(digits) > MAX_CARDINAL_DIGITS:
        return read_digits(digits)
    n = int(digits)
    if n == 0:
        return "零"
    text = _read_positive(n)
    if text.startswith("一十"):
        text = text[1:]
    return _LIANG.sub("两", text)


def read_number(number: str) -> str:
    """Reads an unsigned integer or decimal string: '3.14' -> 三点一四, '0.5' -> 零点五."""
    whole, _, fraction = number.partition(".")
    text = read_integer(whole)
    if fraction:
        text += "点" + read_digits(fraction)
    return text
