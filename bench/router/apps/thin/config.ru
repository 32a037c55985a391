# A Rack app under Thin (Debian's): one EventMachine reactor.
body = "Hello from Thin.\n" * 32
run ->(env) { [200, { "Content-Type" => "text/plain", "Content-Length" => body.bytesize.to_s }, [body]] }
