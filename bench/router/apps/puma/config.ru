# A Rack app under Puma (Debian's), in its default single mode with a thread pool.
body = "Hello from Puma.\n" * 32
run ->(env) { [200, { "Content-Type" => "text/plain", "Content-Length" => body.bytesize.to_s }, [body]] }
