//! No secrets in logs: every store operation runs with tracing at trace level (the library's spans, and
//! the `log` records of tokio-postgres and wasmtime), and no token or session value appears in the output.

use std::io::Write;
use std::sync::{Arc, Mutex};

use tracing_subscriber::fmt::format::FmtSpan;
use wasm_sessions_tests::TestDb;

/// Collects everything the subscriber writes.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn trace_level_logs_of_every_operation_contain_no_token_and_no_session_data() {
    let captured = Captured::default();
    let writer = captured.clone();
    // Everything at trace level except the code generator's own records (gigabytes of machine code,
    // written before any session exists).
    let filter = tracing_subscriber::EnvFilter::new(
        "trace,cranelift_codegen=off,cranelift_frontend=off,regalloc2=off,wasmtime_internal_cranelift=off",
    );
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_span_events(FmtSpan::FULL)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .try_init()
        .expect("the only subscriber in this test binary");

    let db = TestDb::new().await;
    let store = db.store().await;
    let secret_value = "correct-horse-battery-staple";
    let secret_number = 918_273_645_546_372_819_i64;
    let mut tokens = Vec::new();

    let mut session = store.new_session().await.unwrap();
    tokens.push(session.id().to_owned());
    session.set("password-hint", secret_value);
    session
        .insert("nested", (secret_number, [secret_value]))
        .unwrap();
    session.set_user(7);
    session.set_label(Some(format!("{secret_value} device")));
    store.save(&mut session).await.unwrap();
    let mut loaded = store.load(session.id()).await.unwrap();
    let _ = loaded.get_str("password-hint");
    loaded.set("password-hint", format!("{secret_value}!"));
    store.save(&mut loaded).await.unwrap();
    // A conflicting save: the refusal is logged, its values are not.
    let mut stale = session.clone();
    let _ = stale.get_str("password-hint");
    stale.set("password-hint", format!("{secret_value}?"));
    let _ = store.save(&mut stale).await;
    store.regenerate_id(&mut session).await.unwrap();
    tokens.push(session.id().to_owned());
    store.cookie_header(&session).await.unwrap();
    store.removal_cookie_header().await.unwrap();
    let listed = store.get_user_sessions(7).await.unwrap();
    let _ = store.load(&format!("{}X", session.id())).await;
    let mut nul = store.new_session().await.unwrap();
    nul.set("k", format!("{secret_value}\0"));
    let _ = store.save(&mut nul).await;
    let mut other = store.new_session().await.unwrap();
    other.set_user(7);
    store.save(&mut other).await.unwrap();
    tokens.push(other.id().to_owned());
    store
        .delete_user_sessions_except(7, session.id())
        .await
        .unwrap();
    store.revoke_session(7, &listed[0].handle).await.unwrap();
    store.delete(session.id()).await.unwrap();
    store.cleanup().await.unwrap();

    let output = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(output.contains("session.commit"), "the spans were captured");
    assert!(
        output.contains("executing statement"),
        "tokio-postgres' records were captured"
    );
    for token in &tokens {
        assert!(
            !output.contains(token.as_str()),
            "a token appears in the logs"
        );
    }
    assert!(
        !output.contains(secret_value),
        "session data appears in the logs"
    );
    assert!(
        !output.contains(&secret_number.to_string()),
        "a typed value appears in the logs"
    );
    eprintln!("{} bytes of trace output checked", output.len());
}
