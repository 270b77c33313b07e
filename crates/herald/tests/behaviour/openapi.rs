//! The served OpenAPI description matches the router: every path it lists exists with
//! its method (answers something other than NOT_FOUND / METHOD_NOT_ALLOWED).

use bytes::Bytes;

use crate::common::*;

#[tokio::test]
async fn every_documented_operation_is_routed() {
    let Some(server) = start_server().await else { return };
    let r = server.call("GET", "/openapi.json", &[], Bytes::new()).await;
    assert_eq!(r.status, 200);
    let spec = r.json();
    assert_eq!(spec["openapi"], "3.1.0");
    let paths = spec["paths"].as_object().expect("paths");
    assert!(paths.len() >= 15);
    for (path, ops) in paths {
        let concrete = path
            .replace("{taskId}", "t1")
            .replace("{messageId}", "m1")
            .replace("{deviceId}", "d1")
            .replace("{userId}", "u1")
            .replace("{appId}", "a1")
            .replace("{keyId}", "k1")
            .replace("{templateName}", "tpl1")
            .replace("{uniqueId}", "s1");
        for method in ops.as_object().unwrap().keys() {
            let r = server.call(&method.to_uppercase(), &concrete, &[], Bytes::from("{}")).await;
            let code = r.json()["resultCode"].as_str().unwrap_or("").to_string();
            assert!(
                code != "NOT_FOUND" && code != "METHOD_NOT_ALLOWED",
                "{method} {path} is documented but not routed ({}: {code})",
                r.status
            );
        }
    }
}
