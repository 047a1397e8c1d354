"""Unit symbols and currency signs read after a number (case-sensitive: 5g is grams, 5G is spelled)."""

UNIT_NAMES: dict[str, str] = {
    # length, area, volume
    "km": "千米", "m": "米", "dm": "分米", "cm": "厘米", "mm": "毫米", "μm": "微米", "um": "微米", "nm": "纳米",
    "km²": "平方千米", "km2": "平方千米", "m²": "平方米", "m2": "平方米", "cm²": "平方厘米", "cm2": "平方厘米",
    "m³": "立方米", "m3": "立方米", "cm³": "立方厘米", "cm3": "立方厘米",
    "L": "升", "mL": "毫升", "ml": "毫升",
    # mass
    "kg": "公斤", "KG": "公斤", "Kg": "公斤", "g": "克", "mg": "毫克", "μg": "微克", "t": "吨",
    # time and speed
    "h": "小时", "min": "分钟", "s": "秒", "ms": "毫秒",
    "km/h": "千米每小时", "m/s": "米每秒",
    # temperature and angle
    "°C": "摄氏度", "°F": "华氏度", "°": "度",
    # electricity, frequency, energy, pressure, sound
    "kWh": "千瓦时", "kW": "千瓦", "W": "瓦", "V": "伏", "mAh": "毫安时",
    "Hz": "赫兹", "kHz": "千赫兹", "MHz": "兆赫兹", "GHz": "吉赫兹",
    "kcal": "千卡", "Pa": "帕", "kPa": "千帕", "MPa": "兆帕", "dB": "分贝",
}

# Units after which a bare 2 stays 二 (二摄氏度); every other unit counts things (两公斤, 两小时).
UNCOUNTED_UNITS = frozenset({"°C", "°F", "°"})

# A currency sign before a number is read as a word after it: ¥100 -> 一百元, $5.5 -> 五点五美元.
CURRENCY_NAMES: dict[str, str] = {"¥": "元", "$": "美元", "€": "欧元", "£": "英镑"}
