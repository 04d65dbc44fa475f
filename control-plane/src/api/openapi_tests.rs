//! The document's log schemas against the golden log (`state/tests_golden.rs`): an entry of
//! every kind and shape, in both leaf formats, as `GET /v1/log/entries` serves it, must
//! validate against the documented `EntryView` — and a detail that is not its kind's shape
//! must not.

use serde_json::{Value, json};
use utoipa::OpenApi;

use super::ApiDoc;
use crate::api::log::EntryView;
use crate::state::LeafFormat;
use crate::state::tests_golden::scenario;

fn validator(schema: &str) -> jsonschema::Validator {
    let doc = serde_json::to_value(ApiDoc::openapi()).expect("document as JSON");
    let root = json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "components": doc["components"],
        "$ref": format!("#/components/schemas/{schema}"),
    });
    jsonschema::validator_for(&root).expect("the documented schema compiles")
}

fn errors(v: &jsonschema::Validator, instance: &Value) -> Vec<String> {
    v.iter_errors(instance)
        .take(3)
        .map(|e| format!("{e} at {}", e.instance_path()))
        .collect()
}

#[test]
fn every_golden_entry_validates_against_the_documented_entry_schema() {
    let v = validator("EntryView");
    for format in [LeafFormat::V1, LeafFormat::V2] {
        let s = scenario(format);
        assert!(!s.log.entries.is_empty());
        for e in &s.log.entries {
            let view = EntryView {
                leaf_hash: hex::encode(e.leaf_hash()),
                entry: e.clone(),
            };
            let json = serde_json::to_value(&view).expect("entry as JSON");
            let errs = errors(&v, &json);
            assert!(
                errs.is_empty(),
                "{format:?} entry {} ({}): {errs:?}\n{json}",
                e.index,
                e.kind().as_str()
            );
        }
    }
}

#[test]
fn a_format_2_detail_of_the_wrong_shape_does_not_validate() {
    let v = validator("EntryView");
    let s = scenario(LeafFormat::V2);
    let e = s.log.entries.first().expect("an entry");
    let mut json = serde_json::to_value(EntryView {
        leaf_hash: hex::encode(e.leaf_hash()),
        entry: e.clone(),
    })
    .expect("entry as JSON");
    assert!(errors(&v, &json).is_empty(), "{json}");
    json["detail"] = json!({"unexpected": true});
    assert!(!errors(&v, &json).is_empty(), "accepted {json}");
    json["kind"] = json!("no_such_kind");
    assert!(!errors(&v, &json).is_empty(), "accepted {json}");
}
