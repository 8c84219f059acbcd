//! The demo app's forms without a browser (the browser test covers sign-in and sign-out everywhere):
//! revoking another device, bad form input, and that every listed route is really served.

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt as _;
use tower::ServiceExt as _;
use wasm_sessions::{SessionStore, StoreError};
use wasm_sessions_cli::serve::{ServeOptions, route_list, router};
use wasm_sessions_tests::TestDb;

/// Posts a form (or GETs when `form` is `None`) with an optional session cookie; returns the status, the
/// `Set-Cookie` token (if any) and the body.
async fn request(
    app: &Router,
    method: &str,
    uri: &str,
    cookie: Option<&str>,
    form: Option<&str>,
) -> (StatusCode, Option<String>, String) {
    let mut builder = Request::builder().method(method).uri(uri);
    if let Some(token) = cookie {
        builder = builder.header(header::COOKIE, format!("varel_session={token}"));
    }
    let body = match form {
        Some(form) => {
            builder = builder.header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
            Body::from(form.to_owned())
        }
        None => Body::empty(),
    };
    let response = app
        .clone()
        .oneshot(builder.body(body).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let token = response
        .headers()
        .get(header::SET_COOKIE)
        .map(|v| v.to_str().unwrap())
        .and_then(|v| v.split(';').next())
        .and_then(|pair| pair.split_once('='))
        .map(|(_, value)| value.to_owned());
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, token, String::from_utf8_lossy(&bytes).into_owned())
}

async fn setup() -> (TestDb, SessionStore, Router) {
    let db = TestDb::new().await;
    let store = db.store().await;
    let app = router(store.clone(), ServeOptions::default());
    (db, store, app)
}

/// Signs in as `user`; returns the new session token.
async fn sign_in(app: &Router, user: i64) -> String {
    let (status, token, _) = request(
        app,
        "POST",
        "/login",
        None,
        Some(&format!("user_id={user}")),
    )
    .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    token.expect("a session cookie")
}

#[tokio::test]
async fn a_device_revoked_from_another_is_signed_out_and_other_users_devices_are_untouchable() {
    let (_db, store, app) = setup().await;
    let laptop = sign_in(&app, 3).await;
    let phone = sign_in(&app, 3).await;
    let stranger = sign_in(&app, 4).await;

    let (_, _, page) = request(&app, "GET", "/", Some(&phone), None).await;
    assert_eq!(page.matches(r#"class="device""#).count(), 2);
    assert!(page.contains("this device"));
    let handles = store.get_user_sessions(3).await.unwrap();
    let laptop_created = store.load(&laptop).await.unwrap().created_at;
    let laptop_handle = handles
        .iter()
        .find(|s| s.created_at == laptop_created)
        .unwrap()
        .handle
        .clone();
    let stranger_handle = store.get_user_sessions(4).await.unwrap()[0].handle.clone();

    // Not the phone's to revoke: 404, and the stranger stays signed in.
    let (status, _, page) = request(
        &app,
        "POST",
        "/devices/revoke",
        Some(&phone),
        Some(&format!("handle={stranger_handle}")),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(page.contains("No such session of yours"));
    assert_eq!(store.load(&stranger).await.unwrap().user_id, Some(4));

    let (status, _, _) = request(
        &app,
        "POST",
        "/devices/revoke",
        Some(&phone),
        Some(&format!("handle={laptop_handle}")),
    )
    .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert!(matches!(
        store.load(&laptop).await,
        Err(StoreError::NotFound)
    ));
    let (_, _, page) = request(&app, "GET", "/", Some(&laptop), None).await;
    assert!(page.contains("You are not signed in"));
    let (_, _, page) = request(&app, "GET", "/", Some(&phone), None).await;
    assert!(page.contains("Signed in as user"));
}

#[tokio::test]
async fn bad_form_input_shows_an_error_on_the_page_and_stores_nothing() {
    let (_db, store, app) = setup().await;
    let (status, token, page) = request(&app, "POST", "/login", None, Some("user_id=alice")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(token, None);
    assert!(page.contains("whole number"));

    let token = sign_in(&app, 8).await;
    let (status, _, page) = request(
        &app,
        "POST",
        "/data",
        Some(&token),
        Some("key=k&value=nul%00byte"),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(page.contains("Not stored"), "{page}");
    assert_eq!(store.load(&token).await.unwrap().get("k"), None);

    let (status, _, _) = request(&app, "POST", "/data", Some(&token), Some("key=k&value=v")).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(store.load(&token).await.unwrap().get("k"), Some("v"));
}

#[tokio::test]
async fn signing_out_here_deletes_only_this_session() {
    let (_db, store, app) = setup().await;
    let here = sign_in(&app, 9).await;
    let elsewhere = sign_in(&app, 9).await;
    let (status, removal, _) = request(&app, "POST", "/logout", Some(&here), None).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(
        removal.as_deref(),
        Some(""),
        "the removal cookie empties it"
    );
    assert!(matches!(store.load(&here).await, Err(StoreError::NotFound)));
    assert_eq!(store.load(&elsewhere).await.unwrap().user_id, Some(9));
}

#[tokio::test]
async fn every_listed_route_is_served_by_the_router() {
    let (_db, _store, app) = setup().await;
    for route in route_list() {
        let path = route
            .path
            .replace("{token}", &"ab".repeat(32))
            .replace("{handle}", &"cd".repeat(32))
            .replace("{user_id}", "1");
        let (status, _, body) = request(&app, route.method.as_str(), &path, None, None).await;
        assert_ne!(status, StatusCode::METHOD_NOT_ALLOWED, "{route:?}");
        assert!(
            !body.contains("no route for") && body != "not found",
            "{route:?} is not routed: {status} {body}"
        );
    }
}
