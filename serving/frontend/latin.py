"""Latin-script words -> Chinese characters, for a G2P that only knows Mandarin.

Rule: a word found (case-insensitively) in COMMON_WORDS is replaced by its established Chinese
form; any other word is spelled letter by letter with LETTER_NAMES (CPU -> 西批优, iPhone ->
艾批艾尺欧恩伊). LETTER_NAMES approximates the English letter names with characters whose
default pypinyin reading is close (A = ei, B = bi, ..., W = da-bu-liu, Z = zi).
"""

LETTER_NAMES: dict[str, str] = {
    "a": "诶", "b": "必", "c": "西", "d": "迪", "e": "伊", "f": "艾弗", "g": "吉",
    "h": "艾尺", "i": "艾", "j": "杰", "k": "开", "l": "艾乐", "m": "艾姆", "n": "恩",
    "o": "欧", "p": "批", "q": "丘", "r": "阿尔", "s": "艾丝", "t": "提", "u": "优",
    "v": "维", "w": "达布溜", "x": "艾克斯", "y": "歪", "z": "兹",
}

# Common words with a Chinese form that Chinese speakers use in place of the English word:
# greetings and loanwords said as transliterations, and brands with official Chinese names.
COMMON_WORDS: dict[str, str] = {
    "ok": "欧克", "okay": "欧克", "hello": "哈喽", "hi": "嗨", "bye": "拜", "byebye": "拜拜",
    "wow": "哇哦", "cool": "酷", "fans": "粉丝", "show": "秀", "party": "派对",
    "pizza": "披萨", "coffee": "咖啡", "sofa": "沙发", "chocolate": "巧克力", "cola": "可乐",
    "hamburger": "汉堡", "taxi": "的士", "bus": "巴士", "blog": "博客", "hacker": "黑客",
    "email": "邮件", "e-mail": "邮件", "wifi": "无线网", "wi-fi": "无线网", "internet": "互联网",
    "google": "谷歌", "microsoft": "微软", "apple": "苹果", "amazon": "亚马逊", "intel": "英特尔",
    "nvidia": "英伟达", "tesla": "特斯拉", "samsung": "三星", "sony": "索尼", "huawei": "华为",
    "xiaomi": "小米", "alibaba": "阿里巴巴", "tencent": "腾讯", "baidu": "百度", "wechat": "微信",
}


def spell(word: str) -> str:
    """Spells the ASCII letters of `word` one by one; other characters are dropped."""
    return "".join(LETTER_NAMES.get(ch, "") for ch in word.lower())


def read_latin_word(word: str) -> str:
    """Reads one Latin word (letters, optionally joined by ' or -) as Chinese characters."""
    lowered = word.lower()
    known = COMMON_WORDS.get(lowered)
    if known is not None:
        return known
    return spell(lowered)
