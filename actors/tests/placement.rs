//! Where the registry starts keyed actors: on the caller's own thread when asked.

use std::thread::ThreadId;

use ::actors::{Keyed, Registry, RegistryOptions};
use actix::prelude::*;
use storage::{Store, StoreOptions};
use uuid::Uuid;

/// A keyed actor that only tells which thread it runs on.
struct Probe;

impl Actor for Probe {
    type Context = Context<Self>;
}

impl Supervised for Probe {}

impl Keyed for Probe {
    type Env = ();

    fn for_key(_key: Uuid, _store: Store, _env: ()) -> Self {
        Probe
    }
}

/// Asks the actor for its thread.
#[derive(Clone, Message)]
#[rtype(result = "ThreadId")]
struct WhereAreYou;

impl Handler<WhereAreYou> for Probe {
    type Result = MessageResult<WhereAreYou>;

    fn handle(&mut self, _: WhereAreYou, _: &mut Context<Self>) -> Self::Result {
        MessageResult(std::thread::current().id())
    }
}

async fn thread_of_new_actor(place_on_caller: bool) -> ThreadId {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), &StoreOptions::default()).unwrap();
    let options = RegistryOptions {
        place_on_caller,
        ..RegistryOptions::default()
    };
    let registry = Registry::<Probe>::start(store, options);
    registry.send(Uuid::now_v7(), WhereAreYou).await.unwrap()
}

#[actix_rt::test]
async fn an_actor_first_needed_on_an_arbiter_runs_on_that_arbiters_thread() {
    assert_eq!(thread_of_new_actor(true).await, std::thread::current().id());
}

#[actix_rt::test]
async fn without_caller_placement_actors_run_on_the_registrys_own_threads() {
    assert_ne!(
        thread_of_new_actor(false).await,
        std::thread::current().id()
    );
}
