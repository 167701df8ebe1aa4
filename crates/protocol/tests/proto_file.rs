//! `proto/parley_v1.proto` describes every message on the wire: each prost message and
//! enumeration in `src/v1.rs` is in the file with the same fields, field numbers and
//! repetition, and the file holds nothing the code does not send.

use std::collections::BTreeMap;

/// message or enum name → (field or value name → (number, repeated))
type Schema = BTreeMap<String, BTreeMap<String, (u32, bool)>>;

fn snake(camel: &str) -> String {
    let mut out = String::new();
    for (i, c) in camel.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

fn camel(snake: &str) -> String {
    snake
        .split('_')
        .map(|part| {
            let mut chars = part.chars();
            chars.next().map_or(String::new(), |first| {
                first.to_ascii_uppercase().to_string() + chars.as_str()
            })
        })
        .collect()
}

/// The messages and enumerations prost derives in `src/v1.rs`.
fn from_rust(source: &str) -> Schema {
    let mut schema = Schema::new();
    let mut current: Option<String> = None;
    let mut module: Option<String> = None;
    let mut pending: Option<(u32, bool)> = None;
    let mut derive_enum = false;
    let mut in_enum: Option<String> = None;
    for line in source.lines().map(str::trim) {
        if line.starts_with("//") {
            continue;
        }
        if line.starts_with("#[derive(") {
            derive_enum = line.contains("Enumeration");
        }
        if let Some(rest) = line.strip_prefix("pub mod ") {
            module = rest.split_whitespace().next().map(camel);
            continue;
        }
        if let Some(rest) = line.strip_prefix("pub struct ") {
            let name = rest
                .split_whitespace()
                .next()
                .unwrap_or_default()
                .to_owned();
            schema.entry(name.clone()).or_default();
            current = Some(name);
            continue;
        }
        if let Some(rest) = line.strip_prefix("pub enum ") {
            let name = rest
                .split_whitespace()
                .next()
                .unwrap_or_default()
                .to_owned();
            if derive_enum {
                in_enum = Some(name.clone());
                schema.entry(name).or_default();
            } else {
                // A oneof: its variants are fields of the enclosing message.
                current = module.clone();
            }
            continue;
        }
        if line == "}" {
            if in_enum.take().is_none() {
                pending = None;
            }
            continue;
        }
        if let Some(name) = &in_enum {
            if let Some((variant, value)) = line.trim_end_matches(',').split_once(" = ") {
                let value: u32 = value.trim().parse().expect("an enum value");
                schema
                    .get_mut(name)
                    .unwrap()
                    .insert(snake(variant.trim()), (value, false));
            }
            continue;
        }
        if line.starts_with("#[prost(") {
            if let Some(tag) = line.split("tag = \"").nth(1) {
                let tag: u32 = tag.split('"').next().unwrap().parse().expect("a tag");
                pending = Some((tag, line.contains("repeated")));
            }
            continue;
        }
        if let (Some((tag, repeated)), Some(message)) = (pending.take(), &current) {
            let field = match line.strip_prefix("pub ") {
                Some(field) => field.split(':').next().unwrap().trim().to_owned(),
                None => snake(line.split('(').next().unwrap().trim()),
            };
            schema
                .entry(message.clone())
                .or_default()
                .insert(field, (tag, repeated));
        }
    }
    schema
}

/// The messages and enumerations in the `.proto` file.
fn from_proto(text: &str) -> Schema {
    let uncommented: String = text
        .lines()
        .map(|l| l.split("//").next().unwrap_or_default())
        .collect::<Vec<_>>()
        .join("\n");
    let spaced = uncommented
        .replace('{', " { ")
        .replace('}', " } ")
        .replace(';', " ; ")
        .replace('=', " = ");
    let tokens: Vec<&str> = spaced.split_whitespace().collect();
    let mut schema = Schema::new();
    // (name, brace depth at which it opened)
    let mut stack: Vec<(String, bool)> = Vec::new();
    let mut statement: Vec<&str> = Vec::new();
    let mut i = 0;
    while i < tokens.len() {
        let token = tokens[i];
        match token {
            "message" | "enum" if tokens.get(i + 2) == Some(&"{") => {
                let name = tokens[i + 1].to_owned();
                schema.entry(name.clone()).or_default();
                stack.push((name, token == "enum"));
                statement.clear();
                i += 3;
                continue;
            }
            "oneof" if tokens.get(i + 2) == Some(&"{") => {
                let owner = stack.last().map(|(n, _)| n.clone()).unwrap_or_default();
                stack.push((owner, false));
                statement.clear();
                i += 3;
                continue;
            }
            "}" => {
                stack.pop();
                statement.clear();
            }
            ";" => {
                if let (Some((owner, is_enum)), Some(eq)) =
                    (stack.last(), statement.iter().position(|t| *t == "="))
                {
                    let number: u32 = statement[eq + 1].parse().expect("a field number");
                    let name = statement[eq - 1];
                    let name = if *is_enum {
                        // ITEM_KIND_UNSPECIFIED → unspecified, GROUP_MESSAGE → group_message
                        let prefix = format!("{}_", snake(owner).to_ascii_uppercase());
                        name.strip_prefix(&prefix)
                            .unwrap_or(name)
                            .to_ascii_lowercase()
                    } else {
                        name.to_owned()
                    };
                    let repeated = statement.first() == Some(&"repeated");
                    schema
                        .get_mut(owner)
                        .unwrap()
                        .insert(name, (number, repeated));
                }
                statement.clear();
            }
            "syntax" | "package" => {}
            other => statement.push(other),
        }
        i += 1;
    }
    schema
}

#[test]
fn the_proto_file_describes_every_message_on_the_wire() {
    let code = from_rust(concat!(
        include_str!("../src/v1.rs"),
        include_str!("../src/v1/attachments.rs"),
        include_str!("../src/v1/devices.rs"),
        include_str!("../src/v1/presence.rs"),
        include_str!("../src/v1/recovery.rs")
    ));
    let file = from_proto(include_str!("../proto/parley_v1.proto"));
    assert!(code.len() > 30, "the parser found the messages: {code:?}");
    let missing: Vec<_> = code.keys().filter(|m| !file.contains_key(*m)).collect();
    assert!(missing.is_empty(), "missing from the .proto: {missing:?}");
    let extra: Vec<_> = file.keys().filter(|m| !code.contains_key(*m)).collect();
    assert!(
        extra.is_empty(),
        "in the .proto but not in v1.rs: {extra:?}"
    );
    for (message, fields) in &code {
        assert_eq!(
            fields, &file[message],
            "{message} differs (left: v1.rs, right: the .proto)"
        );
    }
}
