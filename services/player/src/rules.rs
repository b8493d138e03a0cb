//! What the service accepts in each text field, stated once: a rule's pattern and length are both
//! what the validators check and what the OpenAPI document publishes, so a client (or the schema
//! fuzzer, `schema-fuzz/run.sh`) that follows the document is never refused for a field.
//!
//! Patterns use only syntax that Rust's `regex` and JavaScript (ECMA-262, JSON Schema's dialect)
//! read alike. Whitespace is spelled out (Unicode's White_Space, which `str::trim` removes) rather
//! than `\s`, whose meaning differs between engines; control characters are Unicode's Cc
//! (`char::is_control`). Each pattern matches a value one way only, so no engine backtracks over it.
//! Lengths count characters, as JSON Schema does. (Python's `re`, which some tools use, also lets
//! `$` match before a final newline; the ECMA reading, where it does not, is the one meant.)

use std::sync::LazyLock;

use regex::Regex;

/// Unicode White_Space.
macro_rules! ws {
    () => {
        r" \t\n\x0b\x0c\r\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
    };
}

/// Control characters (Unicode Cc).
macro_rules! ctrl {
    () => {
        r"\x00-\x1f\x7f-\x9f"
    };
}

/// Whitespace that is not a control character, and the newline: what may lead a message.
macro_rules! ws_in_text {
    () => {
        r"\n \xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
    };
}

/// Control characters but the newline.
macro_rules! ctrl_but_newline {
    () => {
        r"\x00-\x09\x0b-\x1f\x7f-\x9f"
    };
}

/// A text field's rule: `pattern` (searched, so anchored where the whole value must match) and a
/// length in characters.
pub struct Rule {
    pub pattern: &'static str,
    pub min: usize,
    pub max: usize,
    regex: LazyLock<Regex>,
}

impl Rule {
    pub fn allows(&self, value: &str) -> bool {
        let length = value.chars().count();
        (self.min..=self.max).contains(&length) && self.regex.is_match(value)
    }
}

macro_rules! rule {
    ($(#[$doc:meta])* $name:ident, $pattern:expr, $min:expr, $max:expr) => {
        $(#[$doc])*
        pub static $name: Rule = Rule {
            pattern: $pattern,
            min: $min,
            max: $max,
            regex: LazyLock::new(|| {
                // Every rule is compiled by `every_rule_compiles`, so this cannot fail at run time.
                #[allow(clippy::expect_used)]
                Regex::new($pattern).expect("rule patterns are valid")
            }),
        };
    };
}

rule!(
    /// What a service notification says happened: lowercase letters, digits and `-`.
    SERVICE_EVENT,
    r"^[a-z0-9-]+$",
    1,
    32
);
rule!(
    /// ASCII letters, digits, `_`, `.` and `-`, starting with a letter or digit.
    USERNAME,
    r"^[A-Za-z0-9][A-Za-z0-9_.-]*$",
    3,
    24
);
rule!(
    /// No control characters, and no whitespace at either end.
    DISPLAY_NAME,
    concat!("^[^", ws!(), ctrl!(), "](?:[^", ctrl!(), "]*[^", ws!(), ctrl!(), "])?$"),
    1,
    48
);
rule!(
    /// Empty, or an https:// URL without whitespace.
    AVATAR_URL,
    concat!("^(?:https://[^", ws!(), "]*)?$"),
    0,
    512
);
rule!(
    /// Empty, or a BCP 47-looking tag: "en", "pt-BR".
    LANGUAGE,
    r"^(?:[A-Za-z0-9]{1,8}(?:-[A-Za-z0-9]{1,8})*)?$",
    0,
    16
);
rule!(
    /// One '@' with something on both sides and a dot inside the domain; no whitespace or control
    /// characters. Letter case does not matter (addresses are stored lowercased).
    EMAIL,
    concat!(
        "^[^@", ws!(), ctrl!(), "]+@[^@.", ws!(), ctrl!(), "][^@", ws!(), ctrl!(), "]*\\.[^@",
        ws!(), ctrl!(), "]*[^@.", ws!(), ctrl!(), "]$"
    ),
    3,
    254
);
rule!(
    /// Any characters.
    PASSWORD,
    r"",
    8,
    128
);
rule!(
    /// Printable ASCII.
    DEVICE_ID,
    r"^[!-~]*$",
    10,
    128
);
rule!(
    /// Printable ASCII.
    CUSTOM_ID,
    r"^[!-~]*$",
    6,
    128
);
rule!(
    /// Printable ASCII: match ids, server names and player ids in match reports.
    TOKEN,
    r"^[!-~]*$",
    1,
    128
);
rule!(
    /// Something besides whitespace; no control characters but newlines.
    MESSAGE_BODY,
    concat!(
        "^[", ws_in_text!(), "]*[^", ws!(), ctrl!(), "][^", ctrl_but_newline!(), "]*$"
    ),
    1,
    crate::messages::MAX_BODY_CHARS
);
rule!(
    /// Any characters.
    BAN_REASON,
    r"",
    1,
    500
);
rule!(
    /// Something besides whitespace.
    SEARCH_TEXT,
    concat!("[^", ws!(), "]"),
    1,
    64
);
rule!(
    /// 1-100 ids separated by commas, each with something besides whitespace. At most 3,000
    /// characters (100 ids of 22 and their commas, with room): a longer list, percent-encoded, could
    /// pass the HTTP server's limit on a request line and be refused before it reaches a handler.
    PRESENCE_IDS,
    concat!(
        "^[", ws!(), "]*[^,", ws!(), "][^,]*(?:,[", ws!(), "]*[^,", ws!(), "][^,]*){0,99}$"
    ),
    1,
    3000
);

/// Every rule, for the tests.
#[cfg(test)]
const ALL: [&Rule; 13] = [
    &USERNAME,
    &DISPLAY_NAME,
    &AVATAR_URL,
    &LANGUAGE,
    &EMAIL,
    &PASSWORD,
    &DEVICE_ID,
    &CUSTOM_ID,
    &TOKEN,
    &MESSAGE_BODY,
    &BAN_REASON,
    &SEARCH_TEXT,
    &PRESENCE_IDS,
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_rule_compiles() {
        for rule in ALL {
            assert!(Regex::new(rule.pattern).is_ok(), "{}", rule.pattern);
        }
    }

    #[test]
    fn rules_accept_and_refuse_what_they_say() {
        let cases: [(&Rule, &[&str], &[&str]); 8] = [
            (
                &USERNAME,
                &["ann", "Ann_99", "a.b-c"],
                &["", "ab", "_ann", "ann smith", "ännä", "ann\n"],
            ),
            (
                &DISPLAY_NAME,
                &["Ann Smith", "Ännä", "x"],
                &["", " Ann", "Ann ", "a\u{0}b", "a\u{2003}"],
            ),
            (
                &AVATAR_URL,
                &["", "https://cdn.example/a.png"],
                &["http://x", "https://a b"],
            ),
            (&LANGUAGE, &["", "en", "pt-BR"], &["en_US", "-", "toolongtag9"]),
            (
                &EMAIL,
                &["ann@example.com", "Ann@Example.COM", "a@b.c", "a@b..c"],
                &[
                    "",
                    "ann",
                    "@example.com",
                    "ann@",
                    "ann@example",
                    "a b@example.com",
                    "ann@.com",
                    "a@b@c.com",
                    " a@b.c",
                ],
            ),
            (
                &MESSAGE_BODY,
                &["hi", "two\nlines", " x "],
                &["", "   ", "\n", "a\tb", "a\u{0}"],
            ),
            (&SEARCH_TEXT, &["stor", " ann "], &["", "   "]),
            (&PRESENCE_IDS, &["a", "a,b", " a , b "], &["", ",", "a,", "a, ,b"]),
        ];
        for (rule, good, bad) in cases {
            for value in good {
                assert!(rule.allows(value), "{} should allow {value:?}", rule.pattern);
            }
            for value in bad {
                assert!(!rule.allows(value), "{} should refuse {value:?}", rule.pattern);
            }
        }
        let many: Vec<String> = (0..101).map(|n| n.to_string()).collect();
        assert!(PRESENCE_IDS.allows(&many[..100].join(",")));
        assert!(!PRESENCE_IDS.allows(&many.join(",")));
    }
}
