"""Text normalisation: any user text -> Chinese characters plus the punctuation that carries prosody.

`normalize(text)` returns only CJK unified ideographs (U+4E00-9FFF, U+3400-4DBF), the marks in
KEPT_PUNCTUATION and line breaks (sentence boundaries). It never raises; text with nothing
readable gives "" (the caller reports that to the user).

The rules, applied in this order (each step turns what it matches into Chinese, so later steps
cannot match it again):
 1. Compatibility forms are folded (NFKD, accents dropped): full-width ＡＢＣ１２３ -> ABC123,
    digits of any script -> 0-9, ①② -> 1 2, ㎞ -> km, ℃ -> °C, m² -> m2; ² and ³ right after
    a digit -> 的平方, 的立方. The Chinese marks ，。、！？；：…（） are kept as they are, so a
    Chinese comma between digits is never a thousands separator.
 2. URL schemes are dropped; e-mail addresses and domains are read part by part
    (. -> 点, @ -> 艾特, digits one by one). "No." before a number -> 第.
 3. Thousands separators go: 1,234,567 -> 1234567.
 4. Phone numbers are read digit by digit with 1 as 幺: mobiles (+86) 1[3-9]xxxxxxxxx,
    landlines 0xx(x)-xxxxxxx(x), service numbers 400/800-xxx-xxxx; so are numbers right after a
    code word (_CODE_WORDS: 编号, 验证码是1234, ...).
 5. Dates: 2024-05-01, 2024/5/1, 2024.5.1 -> 二零二四年五月一日; 2024-05 -> 二零二四年五月.
    Numbers with two or more dots (versions, IP addresses) are read digit by digit with 点.
 6. A four-digit number (1000-2999) before 年 is a year, read digit by digit (2020-2024年 too).
 7. Times h:mm[:ss] (also with ：) -> 十点三十分[十五秒] (:00 is dropped: 10:00 -> 十点; hour 2 is 两点),
    with am/pm -> 上午/下午 in front (3pm -> 下午三点);
    other a:b -> a比b. Expressions with =, <, >, <=, >=, != are read as arithmetic
    (5-3=2 -> 五减三等于二); * and × between numbers -> 乘; a/b -> b分之a.
 8. Numbers with their sign, currency sign, 万/亿 and unit (units.py), alone or as a range
    joined by - ~ — (3-5 -> 三到五, 10%-20% and 10-20% -> 百分之十到百分之二十): 50% -> 百分之五十,
    ‰ -> 千分之, -5 -> 负五 (a - right after a letter, digit or closing mark is not a sign),
    +5 -> 正五, ¥100 -> 一百元, 60km/h -> 六十千米每小时. After 日号月点分秒时元个 a - or ~ before a number is
    a range (5月1日-3日 -> 五月一日到三日). Numbers themselves follow numbers.py. A lone 2 is said 两
    before a measure word (MEASURE_WORDS), a unit that counts, 万/亿/千 or with a currency,
    but not after 第 (第2名 -> 第二名).
 9. / before a unit or a Chinese measure after Chinese text -> 每 (5元/kg -> 五元每公斤).
10. Latin words: dotted acronyms (U.S.A.) are spelled; other words go through latin.py
    (a small dictionary of common words, else letter by letter).
11. Symbols with an obvious reading: & -> 和, + -> 加, = -> 等于, @ -> 艾特, × -> 乘, ÷ -> 除以.
12. Punctuation: , ! ? ; : -> ，！？；：; ... ⋯ and runs of 。 -> …; a remaining . -> 。;
    brackets ()（）[]【】{}<> and dashes — -> ，; quotes, book-title marks, hyphens, slashes and
    every other character (emoji, control characters, other scripts, rare symbols) are removed.
13. A run of marks collapses to its strongest (。！？… > ； > line break > ： > ， > 、, first
    one wins within a level); marks at the start of the text or of a line are dropped.
"""

import re
import unicodedata
from collections.abc import Callable

from serving.frontend.latin import read_latin_word, spell
from serving.frontend.numbers import read_digits, read_integer, read_number
from serving.frontend.units import CURRENCY_NAMES, UNCOUNTED_UNITS, UNIT_NAMES

# Marks that end a sentence (split_sentences cuts after them) and marks that end a clause.
SENTENCE_END_MARKS = "。！？；…"
CLAUSE_MARKS = "，、："
KEPT_PUNCTUATION = SENTENCE_END_MARKS + CLAUSE_MARKS
CJK_RANGES = "\u3400-\u4dbf\u4e00-\u9fff"

# After a lone 2 these words make it 两 (两个, 两点, 两公斤); 年级 is the one common exception.
MEASURE_WORDS = tuple(
    "个只位条张本件次天年岁人种点元块角毛台辆头匹家双对名份斤吨米克升秒分周倍项篇首句部门间套杯碗瓶"
    "层座颗棵片把根道类样批遍下场届口声步圈行列组百千万亿"
) + ("公里", "公斤", "千克", "千米", "小时", "分钟")
_NOT_MEASURE_AFTER_2 = ("年级",)

Replacement = str | Callable[[re.Match[str]], str]

# --- 1. folding -------------------------------------------------------------------------------

_PLAIN = rf"\x00-\x7f{CJK_RANGES}，。、！？；：…（）"
_NON_PLAIN_RUN = re.compile(rf"[^{_PLAIN}]+")
_COMBINING_MARKS = re.compile(r"[\u0300-\u036f]+")
# Characters whose folded form is wrong or missing for our purpose (≠ would fold to =).
_CHAR_MAP = str.maketrans({
    "〇": "零", "−": "-", "–": "-", "‐": "-", "‑": "-", "―": "—", "〜": "~", "⋯": "…", "⁄": "/",
    "≠": "!=", "\r": "\n", "\u2028": "\n", "\u2029": "\n", "\t": " ",
})


def _fold_char(ch: str) -> str:
    if ch.isdecimal():  # decimal digits of any script: １２３, ١٢٣ -> 123
        return str(unicodedata.decimal(ch))
    folded = _COMBINING_MARKS.sub("", unicodedata.normalize("NFKD", ch))
    # ①② or ²³ fold to digits; a space keeps them from merging into one number.
    if folded[-1:].isdigit():
        folded += " "
    return folded


def _fold(match: re.Match[str]) -> str:
    return "".join(map(_fold_char, match.group()))


_POWER_OF_NUMBER = re.compile(r"(?<=\d)([²³])")
_POWER_WORDS = {"²": "的平方", "³": "的立方"}


def _fold_compatibility_forms(text: str) -> str:
    text = _POWER_OF_NUMBER.sub(lambda m: _POWER_WORDS[m.group()], text.translate(_CHAR_MAP))
    return _NON_PLAIN_RUN.sub(_fold, text).translate(_CHAR_MAP)


# --- 2. addresses -------------------------------------------------------------------------------

# Repetitions are bounded (DNS labels have at most 63 characters) so that no pattern can
# backtrack over a long run of text: every pass stays linear in the text length.
_DOMAIN = (
    r"[A-Za-z0-9][A-Za-z0-9-]{0,62}(?:\.[A-Za-z0-9][A-Za-z0-9-]{0,62}){0,8}"
    r"\.(?:com|cn|net|org|edu|gov|io|ai|cc|top|info|me)(?![A-Za-z0-9])"
)
_ADDRESS_PART = re.compile(r"[A-Za-z]+|\d+|[.@_+-]")
_ADDRESS_SYMBOLS = {".": "点", "@": "艾特", "_": "下划线", "+": "加", "-": "杠"}


def _read_address(match: re.Match[str]) -> str:
    parts = []
    for part in _ADDRESS_PART.findall(match.group()):
        if part[0].isdigit():
            parts.append(read_digits(part))
        elif part in _ADDRESS_SYMBOLS:
            parts.append(_ADDRESS_SYMBOLS[part])
        else:
            parts.append(read_latin_word(part))
    return "".join(parts)


# --- 4.-7. numbers with a fixed shape -----------------------------------------------------------

def _without_commas(match: re.Match[str]) -> str:
    return match.group().replace(",", "")


_NON_DIGITS = re.compile(r"[^0-9]+")


def _read_phone(match: re.Match[str]) -> str:
    return read_digits(_NON_DIGITS.sub("", match.group()), one="幺")


def _read_date(match: re.Match[str]) -> str:
    year, month, day = match.group("year"), int(match.group("month")), match.group("day")
    if not 1 <= month <= 12 or day is not None and not 1 <= int(day) <= 31:
        return match.group()
    text = read_digits(year) + "年" + read_integer(str(month)) + "月"
    if day is not None:
        text += read_integer(str(int(day))) + "日"
    return text


def _read_dotted(match: re.Match[str]) -> str:
    return "点".join(read_digits(part) for part in match.group().split("."))


def _read_years(match: re.Match[str]) -> str:
    text = read_digits(match.group(1))
    if match.group(2):
        text += "到" + read_digits(match.group(2))
    return text


_HALF_DAY_WORDS = {"a": "上午", "p": "下午"}


def _read_hour(hours: str) -> str:
    h = int(hours)
    return ("两" if h == 2 else read_integer(str(h))) + "点"


def _read_clock(hours: str, minutes: str, seconds: str | None) -> str | None:
    h, m, s = int(hours), int(minutes), int(seconds) if seconds else 0
    if h > 24 or m > 59 or s > 59:
        return None
    text = _read_hour(hours)
    if m or s:
        text += ("零" if m < 10 else "") + read_integer(str(m)) + "分"
    if s:
        text += ("零" if s < 10 else "") + read_integer(str(s)) + "秒"
    return text


def _read_time(match: re.Match[str]) -> str:
    first = _read_clock(*match.group(1, 2, 3))
    second = None if match.group(4) is None else _read_clock(*match.group(4, 5, 6))
    if first is None or match.group(4) is not None and second is None:
        return match.group()
    half_day = _HALF_DAY_WORDS.get((match.group(7) or "").lower(), "")
    return half_day + first + ("到" + second if second else "")


def _read_hour_of_half_day(match: re.Match[str]) -> str:
    if not 1 <= int(match.group(1)) <= 12:
        return match.group()
    return _HALF_DAY_WORDS[match.group(2).lower()] + _read_hour(match.group(1))


def _read_code(match: re.Match[str]) -> str:
    return match.group(1) + match.group(2) + read_digits(match.group(3), one="幺")


def _read_ratio(match: re.Match[str]) -> str:
    return read_number(match.group(1)) + "比" + read_number(match.group(2))


_ARITHMETIC_TOKEN = re.compile(r"\d+(?:\.\d+)?|[<>!=]=|[-+×*/÷=<>≤≥]")
_OPERATOR_WORDS = {
    "+": "加", "-": "减", "×": "乘", "*": "乘", "/": "除以", "÷": "除以", "=": "等于", "==": "等于",
    "<": "小于", ">": "大于", "<=": "小于等于", "≤": "小于等于", ">=": "大于等于", "≥": "大于等于",
    "!=": "不等于",
}


def _read_arithmetic(match: re.Match[str]) -> str:
    parts = []
    expect_operand = True
    for token in _ARITHMETIC_TOKEN.findall(match.group()):
        if token[0].isdigit():
            parts.append(read_number(token))
            expect_operand = False
        elif expect_operand and token == "-":
            parts.append("负")
        else:
            parts.append(_OPERATOR_WORDS[token])
            expect_operand = True
    return "".join(parts)


def _read_fraction(match: re.Match[str]) -> str:
    return read_integer(match.group(2)) + "分之" + read_integer(match.group(1))


# --- 8. quantities ------------------------------------------------------------------------------

_UNIT_ALTERNATIVES = "|".join(re.escape(u) for u in sorted(UNIT_NAMES, key=len, reverse=True))
_CURRENCY_SIGNS = "".join(CURRENCY_NAMES)


def _quantity_pattern(prefix: str) -> str:
    return (
        rf"(?:(?P<{prefix}cur>[{re.escape(_CURRENCY_SIGNS)}])[ ]?)?"
        rf"(?P<{prefix}num>\d+(?:\.\d+)?)(?P<{prefix}mag>万亿|亿|万|千)?"
        rf"(?:[ ]?(?P<{prefix}unit>%|‰|{_UNIT_ALTERNATIVES})(?![A-Za-z]))?"
    )


def _says_liang(number: str, currency: str | None, magnitude: str | None, unit: str | None,
                before: str, after: str) -> bool:
    """Whether a lone 2 is said 两 (rule 8)."""
    if number != "2" or before == "第":
        return False
    if currency or magnitude:
        return True
    if unit is not None:
        return unit in UNIT_NAMES and unit not in UNCOUNTED_UNITS
    return after.startswith(MEASURE_WORDS) and not after.startswith(_NOT_MEASURE_AFTER_2)


def _read_one_quantity(number: str, magnitude: str | None, sign: str | None, currency: str | None,
                       unit: str | None, before: str, after: str) -> str:
    if _says_liang(number, currency, magnitude, unit, before, after):
        spoken = "两"
    else:
        spoken = read_number(number)
    spoken += magnitude or ""
    sign_word = {"-": "负", "+": "正", None: ""}[sign]
    if unit == "%":
        return sign_word + "百分之" + spoken
    if unit == "‰":
        return sign_word + "千分之" + spoken
    return sign_word + spoken + UNIT_NAMES.get(unit, "") + CURRENCY_NAMES.get(currency, "")


def _read_quantities(match: re.Match[str]) -> str:
    text = match.string
    before = text[match.start() - 1] if match.start() else ""
    after = text[match.end():match.end() + 2]
    sign, currency, unit = match.group("sign", "a_cur", "a_unit")
    if match.group("b_num") is None:
        return _read_one_quantity(*match.group("a_num", "a_mag"), sign, currency, unit, before, after)
    second_currency, second_unit = match.group("b_cur", "b_unit")
    # 10-20% -> 百分之十到百分之二十; ¥100-200 -> 一百到二百元 (the currency word goes last).
    if unit is None and second_unit in ("%", "‰"):
        unit = second_unit
    if currency and not second_currency:
        currency, second_currency = None, currency
    return (
        _read_one_quantity(*match.group("a_num", "a_mag"), sign, currency, unit, before, after)
        + "到"
        + _read_one_quantity(*match.group("b_num", "b_mag", "b_sign"), second_currency, second_unit, "", after)
    )


# --- 10.-13. letters, symbols, punctuation ------------------------------------------------------

def _spell_acronym(match: re.Match[str]) -> str:
    return spell(match.group())


def _read_latin(match: re.Match[str]) -> str:
    return read_latin_word(match.group())


def _read_per_unit(match: re.Match[str]) -> str:
    return "每" + UNIT_NAMES[match.group(1)]


_SYMBOL_WORDS = {"&": "和", "+": "加", "=": "等于", "@": "艾特", "×": "乘", "÷": "除以"}


def _read_symbol(match: re.Match[str]) -> str:
    return _SYMBOL_WORDS[match.group()]


_PUNCTUATION_MAP = str.maketrans({
    ",": "，", "!": "！", "?": "？", ";": "；", ":": "：", ".": "。",
    "(": "，", ")": "，", "（": "，", "）": "，", "[": "，", "]": "，", "【": "，", "】": "，",
    "{": "，", "}": "，", "<": "，", ">": "，", "—": "，",
})
# Rank of each kept mark when a run of them collapses to one (lower is stronger).
_MARK_RANK = {mark: rank for rank, level in enumerate(("。！？…", "；", "\n", "：", "，", "、")) for mark in level}


def _strongest_mark(match: re.Match[str]) -> str:
    return min(match.group(), key=_MARK_RANK.__getitem__)


_NUMBER_END_CHARS = r"0-9A-Za-z.%)）"
_HALF_DAY = r"[ ]?([AaPp])\.?[Mm]\.?(?![A-Za-z])"
# Numbers after these words are codes, read digit by digit with 1 as 幺.
_CODE_WORDS = "号码|编号|单号|账号|帐号|卡号|学号|工号|证号|尾号|邮编|密码|验证码|代码|ID|QQ"
_PASSES: tuple[tuple[re.Pattern[str], Replacement], ...] = tuple(
    (re.compile(pattern, re.ASCII), replacement) for pattern, replacement in (
        # 2. addresses
        (r"(?i:https?)://", ""),
        (rf"(?<![A-Za-z0-9.@_+-])(?:[A-Za-z0-9][A-Za-z0-9._+-]{{0,63}}@)?{_DOMAIN}", _read_address),
        (r"(?<![A-Za-z])No\.[ ]?(?=\d)", "第"),
        # 3. thousands separators
        (r"(?<![\d.,])\d{1,3}(?:,\d{3})+(?![\d,])", _without_commas),
        # 4. phone numbers
        (r"(?<![\d.+])(?:\+?86[ -]?)?1[3-9]\d(?:[ -]?\d{4}){2}(?!\d)"
         r"|(?<![\d.])(?:0\d{2,3}[ -]?\d{7,8}|[48]00[ -]?\d{3}[ -]?\d{4})(?!\d)", _read_phone),
        (rf"({_CODE_WORDS})([ ]*[:：是为]?[ ]*)(\d+)(?![\d.])", _read_code),
        # 5. dates, dotted numbers
        (r"(?<![\d.:/-])(?P<year>[12]\d{3})(?P<sep>[-/.])(?P<month>\d{1,2})"
         r"(?:(?P=sep)(?P<day>\d{1,2}))?(?![\d/-]|\.\d)", _read_date),
        (r"(?<![\d.])\d+(?:\.\d+){2,}(?!\d)", _read_dotted),
        # 6. years
        (r"(?<![\d.])([12]\d{3})(?:[ ]*[-~—至到][ ]*([12]\d{3}))?(?=[ ]*年)", _read_years),
        # 7. times, ratios, arithmetic, fractions
        (r"(?<![\d.:：])(\d{1,2})[:：](\d{2})(?:[:：](\d{2}))?"
         r"(?:[ ]*[-~—至到][ ]*(\d{1,2})[:：](\d{2})(?:[:：](\d{2}))?)?"
         rf"(?:{_HALF_DAY})?(?![\d:：])", _read_time),
        (rf"(?<![\d.:：])(\d{{1,2}}){_HALF_DAY}", _read_hour_of_half_day),
        (r"(?<![\d.:：])(\d+(?:\.\d+)?)[:：](\d+(?:\.\d+)?)(?![\d:：])", _read_ratio),
        (r"(?<![\d.A-Za-z+×*/÷=<>-])-?\d+(?:\.\d+)?(?:[ ]*[-+×*/÷][ ]*-?\d+(?:\.\d+)?){0,8}"
         r"[ ]*(?:[<>!=]=|[=<>≤≥])[ ]*"
         r"-?\d+(?:\.\d+)?(?:[ ]*[-+×*/÷][ ]*-?\d+(?:\.\d+)?){0,8}", _read_arithmetic),
        (r"(?<=\d)[ ]*[*×][ ]*(?=\d)", "乘"),
        (r"(?<![\d./])(\d+)/(\d+)(?![\d/]|\.\d)", _read_fraction),
        # 8. quantities and ranges
        (r"(?<=[日号月点分秒时元个])[ ]*[-~—][ ]*(?=[¥$€£]?\d)", "到"),
        (rf"(?:(?<![{_NUMBER_END_CHARS}])(?P<sign>[-+]))?{_quantity_pattern('a_')}"
         rf"(?:[ ]*[-~—][ ]*(?P<b_sign>-)?{_quantity_pattern('b_')})?", _read_quantities),
        # 9. per unit
        (rf"/(?<=[{CJK_RANGES}]/)({_UNIT_ALTERNATIVES})(?![A-Za-z])", _read_per_unit),
        (rf"/(?<=[{CJK_RANGES}]/)(?=[斤个人次天月年时件吨升克米台位])", "每"),
        # 10. Latin words
        (r"(?<![A-Za-z.])[A-Za-z](?:\.[A-Za-z])+\.?(?![A-Za-z])", _spell_acronym),
        (r"[A-Za-z]+(?:['-][A-Za-z]+)*", _read_latin),
        # 11. symbols
        ("[" + re.escape("".join(_SYMBOL_WORDS)) + "]", _read_symbol),
        # 12. ellipses (the single-character marks go through _PUNCTUATION_MAP)
        (r"\.{2,}|。{3,}|…+", "…"),
    )
)
_NOT_KEPT = re.compile(rf"[^{CJK_RANGES}{KEPT_PUNCTUATION}\n]+")
_MARK_RUN = re.compile(rf"[{KEPT_PUNCTUATION}\n]{{2,}}")
_LEADING_MARKS = re.compile(rf"^[{KEPT_PUNCTUATION}\n]+")


def normalize(text: str) -> str:
    """Turns user text into Chinese characters, KEPT_PUNCTUATION and line breaks (see module doc)."""
    text = _fold_compatibility_forms(text)
    for pattern, replacement in _PASSES:
        text = pattern.sub(replacement, text)
    text = _NOT_KEPT.sub("", text.translate(_PUNCTUATION_MAP))
    text = _MARK_RUN.sub(_strongest_mark, text)
    return _LEADING_MARKS.sub("", text).rstrip("\n")
