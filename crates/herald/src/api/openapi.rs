//! The OpenAPI description: the handlers' `#[utoipa::path]` annotations and the types they
//! read and answer, assembled by the router that serves them ([`super::routes`]). This file
//! only adds what no handler says: the title, the tags and the three ways to authenticate.
//! `docs/openapi.json` is a copy (`herald openapi > docs/openapi.json`) that a test keeps
//! equal to what the binary serves.

use utoipa::openapi::OpenApi;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi as _};

/// The name of the security scheme of the signed server API.
pub const SIGNATURE: &str = "signature";
/// The admin bearer token.
pub const ADMIN: &str = "admin";
/// A device's bearer token.
pub const DEVICE: &str = "device";
/// An app's key (device registration).
pub const APP_KEY: &str = "appKey";

#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "Herald",
        description = "Self-hosted mobile push service: the signed server API (`/v1`, MPS field names and \
            envelope), the device API (`/device/v1`) and the admin API (`/admin/v1`). Signing, envelopes and \
            semantics: docs/api.md; every refusal code: docs/errors.md.",
    ),
    modifiers(&Security),
    components(schemas(super::Refused)),
    tags(
        (name = "push", description = "Simple, Template, Multiple and Broadcast pushes, revoke, schedules"),
        (name = "templates", description = "Templates with #name# placeholders"),
        (name = "status", description = "What became of a task and of a message"),
        (name = "devices", description = "Devices and users, as the app's server sees them"),
        (name = "device", description = "What an app on a device calls"),
        (name = "admin", description = "Apps and API keys, for the operator"),
        (name = "node", description = "Health and metrics of one node"),
    ),
)]
struct Base;

struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        let header = |name: &str, description: &str| {
            let mut key = utoipa::openapi::security::ApiKeyValue::new(name);
            key.description = Some(description.into());
            SecurityScheme::ApiKey(utoipa::openapi::security::ApiKey::Header(key))
        };
        components.add_security_scheme(
            SIGNATURE,
            header(
                "X-Herald-Signature",
                "Sent with X-Herald-Key (the key id), X-Herald-Timestamp (Unix ms) and X-Herald-Nonce: \
                 base64url without padding of HMAC-SHA256 (or SHA256withRSA) over \
                 METHOD\\nPATH\\nCANONICAL_QUERY\\nTIMESTAMP\\nNONCE\\nhex(SHA256(body)). See docs/api.md.",
            ),
        );
        components.add_security_scheme(
            APP_KEY,
            header("X-Herald-App-Key", "The app's key, sent with X-Herald-App (the app id)."),
        );
        let bearer = |description: &str| {
            SecurityScheme::Http(
                HttpBuilder::new().scheme(HttpAuthScheme::Bearer).description(Some(description)).build(),
            )
        };
        components.add_security_scheme(ADMIN, bearer("The admin token of the node's configuration."));
        components.add_security_scheme(DEVICE, bearer("The deviceToken that registration answered."));
    }
}

/// The title, tags and security schemes that the routes' own descriptions are merged into.
pub(super) fn base() -> OpenApi {
    let mut spec = Base::openapi();
    spec.info.version = env!("CARGO_PKG_VERSION").into();
    spec
}

/// The OpenAPI description of every route (as `/openapi.json` serves it).
pub fn description() -> OpenApi {
    super::routes().into_openapi()
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::{ADMIN, APP_KEY, DEVICE, SIGNATURE};

    fn spec() -> Value {
        serde_json::from_str(&super::description().to_pretty_json().unwrap()).unwrap()
    }

    #[test]
    fn the_copy_in_docs_is_what_the_binary_serves() {
        let docs: Value = serde_json::from_str(include_str!("../../../../docs/openapi.json")).unwrap();
        assert!(
            docs == spec(),
            "docs/openapi.json differs from the generated description: run \
             `cargo run -q -p herald -- openapi > docs/openapi.json`"
        );
    }

    #[test]
    fn each_push_endpoint_takes_its_own_request() {
        let spec = spec();
        let body = |path: &str| {
            let op = &spec["paths"][path]["post"];
            op["requestBody"]["content"]["application/json"]["schema"]["$ref"].as_str().unwrap_or("").to_string()
        };
        let expected = [
            ("/v1/push/simple", "SimplePushRequest"),
            ("/v1/push/template", "TemplatePushRequest"),
            ("/v1/push/multiple", "MultiplePushRequest"),
            ("/v1/push/broadcast", "BroadcastPushRequest"),
            ("/v1/push/revoke", "RevokeMessageRequest"),
            ("/v1/push/revoke-task", "RevokeTaskRequest"),
            ("/v1/templates", "TemplateBody"),
            ("/device/v1/register", "RegisterBody"),
        ];
        for (path, schema) in expected {
            assert_eq!(body(path), format!("#/components/schemas/{schema}"), "{path}");
        }
        let schemas = &spec["components"]["schemas"];
        for (schema, field) in [
            ("TemplatePushRequest", "templateKeyValue"),
            ("MultiplePushRequest", "targetMsg"),
            ("BroadcastPushRequest", "msgkey"),
            ("SimplePushRequest", "expiredSeconds"),
        ] {
            assert!(has_field(schemas, &schemas[schema], field), "{schema}.{field}");
        }
        // A template push's text is the template's: the request schema does not offer it.
        assert!(!has_field(schemas, &schemas["TemplatePushRequest"], "title"));
        assert!(has_field(schemas, &schemas["SimplePushRequest"], "title"));
    }

    /// Whether `field` is a property of `schema` or of one of its `allOf` parts (a flattened
    /// struct is an `allOf` with a reference).
    fn has_field(schemas: &Value, schema: &Value, field: &str) -> bool {
        if let Some(r) = schema["$ref"].as_str() {
            return has_field(schemas, &schemas[r.trim_start_matches("#/components/schemas/")], field);
        }
        schema["properties"][field].is_object()
            || schema["allOf"].as_array().into_iter().flatten().any(|part| has_field(schemas, part, field))
    }

    /// Every `$ref` names a schema of the description, and every operation id is unique.
    #[test]
    fn references_resolve_and_operations_are_unique() {
        fn refs(v: &Value, out: &mut Vec<String>) {
            match v {
                Value::Object(m) => {
                    if let Some(Value::String(r)) = m.get("$ref") {
                        out.push(r.clone());
                    }
                    m.values().for_each(|v| refs(v, out));
                }
                Value::Array(a) => a.iter().for_each(|v| refs(v, out)),
                _ => {}
            }
        }
        let spec = spec();
        let mut found = Vec::new();
        refs(&spec, &mut found);
        assert!(found.len() > 20);
        for r in found {
            let name = r.strip_prefix("#/components/schemas/").unwrap_or_else(|| panic!("{r}"));
            assert!(spec["components"]["schemas"][name].is_object(), "{r} is not in components");
        }
        let mut ids: Vec<&str> = spec["paths"]
            .as_object()
            .unwrap()
            .values()
            .flat_map(|ops| ops.as_object().unwrap().values())
            .map(|op| op["operationId"].as_str().unwrap())
            .collect();
        let n = ids.len();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), n, "operation ids repeat");
    }

    #[test]
    fn every_operation_is_secured_or_public_on_purpose() {
        let spec = spec();
        for (path, ops) in spec["paths"].as_object().unwrap() {
            for (method, op) in ops.as_object().unwrap() {
                // Vendor receipt callbacks carry their credential in the path (a token only
                // the master key's holders compute), which OpenAPI has no scheme for.
                let public = path == "/healthz"
                    || path == "/readyz"
                    || path == "/metrics"
                    || path.starts_with("/vendor/v1/receipts/");
                let secured = op["security"].as_array().is_some_and(|s| !s.is_empty());
                assert!(public || secured, "{method} {path} names no security scheme");
                for requirement in op["security"].as_array().into_iter().flatten() {
                    for scheme in requirement.as_object().unwrap().keys() {
                        assert!(
                            [SIGNATURE, ADMIN, DEVICE, APP_KEY].contains(&scheme.as_str())
                                && spec["components"]["securitySchemes"][scheme].is_object(),
                            "{method} {path}: unknown security scheme {scheme}"
                        );
                    }
                }
            }
        }
    }
}
