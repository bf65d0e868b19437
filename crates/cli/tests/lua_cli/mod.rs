//! Compatibility with the published `lua-cli@3.37.0` client, driven through Node against the real server.
