//! Reserved usernames: names that look official (`admin`, `support`, ...) and their close ASCII
//! look-alikes (`moderat0r`, `rnoderator`, `adm1n`, `support_`, `parley_support`) cannot be
//! registered, so that nobody can pose as the operator. The list is configurable
//! (`reserved_names` in the configuration file).
//!
//! Usernames are already plain ASCII (`parley_protocol::Username`), so a look-alike is one that
//! reads the same once confusable characters are folded: digits that look like letters, `rn`
//! for `m`, `vv` for `w`, `i`/`l`/`1`, doubled letters, underscores and trailing digits.

use parley_protocol::Username;

/// Refused unless the configuration names another list.
pub const DEFAULT_RESERVED: &[&str] = &[
    "admin",
    "administrator",
    "moderator",
    "support",
    "security",
    "system",
    "parley",
    "root",
    "staff",
    "official",
    "abuse",
    "helpdesk",
    "postmaster",
    "noreply",
    "operator",
];

pub struct ReservedNames {
    /// (the name as configured, its folded form)
    names: Vec<(String, String)>,
}

/// The folded form: what a name looks like to a reader who does not look closely.
fn fold(text: &str) -> String {
    let mapped: String = text
        .chars()
        .filter(|c| *c != '_')
        .map(|c| match c {
            '0' => 'o',
            '1' | 'i' | '!' | '|' => 'l',
            '2' => 'z',
            '3' => 'e',
            '4' => 'a',
            '5' => 's',
            '6' | '8' => 'b',
            '7' => 't',
            '9' => 'g',
            c => c,
        })
        .collect();
    let mapped = mapped.replace("rn", "m").replace("vv", "w");
    let mut folded = String::with_capacity(mapped.len());
    for c in mapped.chars() {
        // "suppport", "admiin"
        if !folded.ends_with(c) {
            folded.push(c);
        }
    }
    folded
}

/// A name without the digits and underscores it ends with (`admin_1` reads as `admin`).
fn stem(text: &str) -> &str {
    text.trim_end_matches(|c: char| c.is_ascii_digit() || c == '_')
}

impl ReservedNames {
    pub fn new<S: AsRef<str>>(names: &[S]) -> ReservedNames {
        ReservedNames {
            names: names
                .iter()
                .map(|n| n.as_ref().trim().to_ascii_lowercase())
                .filter(|n| !n.is_empty())
                .map(|n| {
                    let folded = fold(stem(&n));
                    (n, folded)
                })
                .collect(),
        }
    }

    /// The reserved name `username` is, or looks like.
    pub fn matching(&self, username: &Username) -> Option<&str> {
        let name = username.as_str();
        // The whole name, and each part between underscores ("parley_support").
        let mut candidates = vec![fold(stem(name))];
        candidates.extend(
            name.split('_')
                .map(stem)
                .filter(|part| !part.is_empty())
                .map(fold),
        );
        self.names
            .iter()
            .find(|(_, folded)| candidates.iter().any(|c| c == folded))
            .map(|(name, _)| name.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reserved(name: &str) -> bool {
        ReservedNames::new(DEFAULT_RESERVED)
            .matching(&Username::parse(name).unwrap())
            .is_some()
    }

    #[test]
    fn reserved_names_and_look_alikes_match() {
        for name in [
            "admin",
            "moderator",
            "moderat0r",
            "rnoderator",
            "m0d3rat0r",
            "adm1n",
            "admln",
            "admiin",
            "admin_",
            "admin_2",
            "supp0rt",
            "suppport",
            "secur1ty",
            "sys_tem",
            "parley_support",
            "the_admin",
            "parl3y",
        ] {
            assert!(reserved(name), "{name}");
        }
    }

    #[test]
    fn ordinary_names_do_not() {
        for name in [
            "alice",
            "bob",
            "admiral",
            "sysop_fan",
            "supporter",
            "mod",
            "carol",
            "moder",
            "dave",
            "erin",
            "frank",
            "user0",
            "parleyfan",
        ] {
            assert!(!reserved(name), "{name}");
        }
    }

    #[test]
    fn the_list_is_the_configured_one() {
        let names = ReservedNames::new(&["acme"]);
        assert!(names.matching(&Username::parse("acrne").unwrap()).is_some());
        assert!(names.matching(&Username::parse("admin").unwrap()).is_none());
    }
}
