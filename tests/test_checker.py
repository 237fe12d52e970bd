"""Semantic analysis: names, constants, hyperparameters, imports, instantiation with symbolic
dims, compile-time control flow, weight sharing, annotations, and error recovery."""

from conftest import codes

LENET_BODY = """
model Net(classes: int = 10) {
    conv = Conv2d(6, kernel=5, padding=2)
    fc = Linear(classes)
    forward(x: f32[B, 1, 28, 28]) -> f32[B, classes] {
        x = x |> conv |> relu |> max_pool2d(2)
        return fc(flatten(x))
    }
}
"""


def test_hyperparameter_defaults_and_overrides(check_source):
    s = check_source(LENET_BODY)
    assert s.ok and s.output_types == ["f32[B, 10]"]
    assert s.trainable_params == 156 + 6 * 14 * 14 * 10 + 10
    s = check_source(LENET_BODY, classes=3)
    assert s.ok and s.output_types == ["f32[B, 3]"]


def test_constants_in_any_order_and_cycles(check_source):
    s = check_source("""
        model M() {
            fc = Linear(WIDTH)
            forward(x: f32[B, 4]) { return fc(x) }
        }
        const WIDTH = BASE * 2
        const BASE = 8
    """)
    assert s.ok and s.output_types == ["f32[B, 16]"]
    s = check_source("""
        const A = B + 1
        const B = A
        model M() { forward(x: f32[N]) { return x } }
    """)
    assert "E-VALUE" in codes(s) or "E-NAME" in codes(s)


def test_max_and_min_of_numbers_are_computed_at_compile_time(check_source):
    """`_make_divisible`'s max/min: of numbers (hyperparameters, constants) they are Python's;
    with a tensor first, max/min stay the reductions."""
    s = check_source("""
        const WIDTH = max(3, 9, 2)
        const HALF = min(0.5, WIDTH)
        model M(c: int = 5) {
            fc = Linear(max(c, WIDTH) - min(c, 4))
            forward(x: f32[B, 4]) {
                return fc(x) * HALF + max(x, 1, keepdims=true) * min(c, 2)
            }
        }
    """)
    assert s.ok and s.output_types == ["f32[B, 5]"], s.diagnostics
    s = check_source("""
        model M() { forward(x: f32[B, N]) { return max(N, 4) } }
    """)
    assert not s.ok


def test_unknown_name_suggests(check_source):
    s = check_source("""
        model M() {
            fc = Linear(4)
            forward(x: f32[B, 4]) { return rleu(fc(x)) }
        }
    """)
    assert codes(s) == ["E-NAME"]
    assert "did you mean `relu`?" in s.diagnostics[0].notes


def test_symbolic_dims_bind_in_submodels_and_layer_declarations(check_source):
    s = check_source("""
        model Block(out: int, stride: int = 1) {
            conv = Conv2d(out, kernel=3, stride=stride, padding=1)
            skip = Conv2d(out, kernel=1, stride=stride) if stride != 1 or C != out else Identity()
            forward(x: f32[B, C, H, W]) { return relu(conv(x) + skip(x)) }
        }
        model Net() {
            a = Block(8)
            b = Block(8)
            c = Block(16, stride=2)
            forward(x: f32[N, 8, 32, 32]) -> f32[N, 16, 16, 16] { return x |> a |> b |> c }
        }
    """)
    assert s.ok, s.diagnostics
    ops = {r.path: r.op for r in s.layers}
    assert ops["a.skip"] == "Identity" and ops["c.skip"] == "Conv2d"
    assert {r.path for r in s.layers} >= {"a.conv", "c.conv", "c.skip"}


def test_unification_mismatch_names_both_types(check_source):
    s = check_source("""
        model Pair() { forward(a: f32[B, T], b: f32[B, T]) { return a + b } }
        model Net() {
            p = Pair()
            forward(x: f32[N, 4], y: f32[N, 5]) { return p(x, y) }
        }
    """)
    assert codes(s) == ["E-SHAPE"]
    assert "f32[B, T]" in s.diagnostics[0].message and "f32[N, 5]" in s.diagnostics[0].message


def test_sequential_generator_names_and_for_over_children(check_source):
    s = check_source("""
        model Layer(d: int) {
            fc = Linear(d)
            forward(x: f32[B, D], scale: f32[B, D]) { return fc(x) * scale }
        }
        model Net(n: int = 3) {
            blocks = Sequential(Layer(4) for i in range(n))
            forward(x: f32[B, 4]) {
                h = x
                for layer in blocks { h = layer(h, x) }
                for i in range(2) { h = h + x }
                return h
            }
        }
    """)
    assert s.ok, s.diagnostics
    assert [r.path for r in s.layers] == ["blocks.0.fc", "blocks.1.fc", "blocks.2.fc"]


def test_sequential_call_chains_children_including_functions(check_source):
    s = check_source("""
        model Net() {
            body = Sequential(Conv2d(4, kernel=3, padding=1), BatchNorm(), relu, max_pool2d(2))
            forward(x: f32[B, 3, 8, 8]) -> f32[B, 4, 4, 4] { return body(x) }
        }
    """)
    assert s.ok, s.diagnostics
    assert [r.path for r in s.layers] == ["body.0", "body.1", "body.2", "body.3"]
    assert s.buffers == 8


def test_weight_sharing_counts_once_and_checks_sizes(check_source):
    s = check_source("""
        model Net() {
            fc = Linear(4)
            forward(x: f32[B, 4]) { return fc(fc(x)) }
        }
    """)
    assert s.ok and s.trainable_params == 20
    s = check_source("""
        model Net() {
            fc = Linear(4)
            forward(x: f32[B, 4], y: f32[B, 5]) { return fc(x) + fc(y) }
        }
    """)
    assert codes(s) == ["E-SHAPE"]


def test_compile_time_if_and_symbolic_condition(check_source):
    s = check_source("""
        model Net(deep: bool = true) {
            fc = Linear(4)
            forward(x: f32[B, 4]) {
                if deep { y = relu(fc(x)) } else { y = fc(x) }
                return y
            }
        }
    """)
    assert s.ok
    s = check_source("""
        model Net() {
            forward(x: f32[B, C]) {
                if C == 4 { y = x } else { y = -x }
                return y
            }
        }
    """)
    assert codes(s) == ["E-CONST"]


def test_annotations_and_return_types(check_source):
    s = check_source("""
        model Net() {
            forward(x: f32[B, 4, 5]) -> f32[B, 21] {
                y: f32[B, 20] = flatten(x)
                z: f32[B, 19] = flatten(x)
                return y
            }
        }
    """)
    assert codes(s) == ["E-ANNOTATION", "E-ANNOTATION"]
    assert "f32[B, 19]" in s.diagnostics[0].message
    assert s.diagnostics[0].label == "dimension 1: 19 vs 20"


def test_several_independent_errors_are_reported(check_source):
    s = check_source("""
        model Net() {
            fc = Linear(4)
            forward(x: f32[B, 3]) {
                a = undefined_thing(x)
                b = x + x[:, :2]
                c = a + b
                return fc(x) + nope
            }
        }
    """)
    assert codes(s) == ["E-NAME", "E-SHAPE", "E-NAME"]


def test_loop_cap_is_checked_before_unrolling(check_source):
    import time

    start = time.perf_counter()
    s = check_source("""
        model Net() {
            blocks = Sequential(Linear(4) for i in range(10**9))
            forward(x: f32[B, 4]) { return blocks(x) }
        }
    """)
    assert codes(s) == ["E-LIMIT"]
    assert time.perf_counter() - start < 1.0


def test_scalars_become_constants_of_the_tensor_dtype(check_source):
    s = check_source("""
        model Net() {
            forward(x: f32[B, 4], ids: i64[B]) { return x * 2.0 + 1, ids + 1 }
        }
    """)
    assert s.ok and s.output_types == ["f32[B, 4]", "i64[B]"]
    s = check_source("""
        model Net() { forward(ids: i64[B]) { return ids * 2.5 } }
    """)
    assert codes(s) == ["E-DTYPE"]


def test_a_layer_takes_float_inputs_of_its_parameters_dtype(check_source):
    s = check_source("""
        model Net() {
            fc = Linear(3)
            forward(x: f64[B, 4], ids: i64[B]) { return fc(x) }
        }
    """)
    assert codes(s) == ["E-DTYPE"]
    assert "has f32 parameters, but its input `x` is f64[B, 4]" in s.diagnostics[0].message
    s = check_source("""
        model Net() {
            fc = Linear(3)
            emb = Embedding(10, 3)
            forward(x: f64[B, 4], ids: i64[B]) { return fc(cast(x, "f32")) + emb(ids) }
        }
    """)
    assert s.ok, s.diagnostics


def test_multi_result_ops_and_unpacking(check_source):
    s = check_source("""
        model Net() {
            forward(x: f32[B, 8]) {
                a, b = split(x, 2, 1)
                c, d, e = split(x, 2, 1)
                return a + b
            }
        }
    """)
    assert codes(s) == ["E-ARGS"]


def test_imports_all_forms(check_source):
    blocks = """
        const WIDTH = 6
        model Lin(d: int = WIDTH) {
            fc = Linear(d)
            forward(x: f32[B, F]) { return fc(x) }
        }
    """
    s = check_source(
        """
        import "lib/blocks.dnet" as lib
        from "lib/blocks.dnet" import Lin as L2
        model Net() {
            a = lib.Lin()
            b = L2(lib.WIDTH)
            forward(x: f32[B, 3]) { return b(a(x)) }
        }
    """,
        extra={"lib/blocks.dnet": blocks},
    )
    assert s.ok, s.diagnostics
    assert s.output_types == ["f32[B, 6]"]


def test_import_cycle_and_escape(check_source, tmp_path):
    s = check_source(
        'import "a.dnet"\nmodel M() { forward(x: f32[B]) { return x } }\n',
        extra={"a.dnet": 'import "b.dnet"\n', "b.dnet": 'import "a.dnet"\n'},
    )
    assert codes(s) == ["E-IMPORT"] and "cycle" in s.diagnostics[0].message
    (tmp_path.parent / "outside.dnet").write_text("const X = 1\n")
    s = check_source('import "../outside.dnet"\nmodel M() { forward(x: f32[B]) { return x } }')
    assert codes(s) == ["E-IMPORT"] and "leaves" in s.diagnostics[0].message


def test_entry_model_selection(check_source):
    text = """
        model A() { forward(x: f32[B]) { return x } }
        model Bee() { forward(x: f32[B, 2]) { return x } }
    """
    assert check_source(text).model == "Bee"
    assert check_source(text, model="A").output_types == ["f32[B]"]
    s = check_source(text, model="Be")
    assert codes(s) == ["E-MODEL"] and "did you mean `Bee`?" in s.diagnostics[0].notes


def test_layers_cannot_be_created_in_forward(check_source):
    s = check_source("""
        model M() { forward(x: f32[B, 3]) { return Linear(3)(x) } }
    """)
    assert codes(s) == ["E-MODEL"]


def test_local_constants_in_model_body(check_source):
    s = check_source("""
        model M(d: int = 4) {
            hidden = d * 4
            up = Linear(hidden)
            down = Linear(d)
            forward(x: f32[B, 4]) -> f32[B, 4] { return down(gelu(up(x))) }
        }
    """)
    assert s.ok and s.trainable_params == (4 * 16 + 16) + (16 * 4 + 4)


def test_dims_as_values_and_arange(check_source):
    s = check_source("""
        model M() {
            pos = Embedding(512, 8)
            forward(ids: i64[B, T]) -> f32[T, 8] { return pos(arange(T)) }
        }
    """)
    assert s.ok, s.diagnostics


def test_symbolic_size_for_parameters_is_an_error(check_source):
    s = check_source("""
        model M() {
            fc = Linear(4)
            forward(x: f32[B, F]) { return fc(x) }
        }
    """)
    assert codes(s) == ["E-SHAPE"] and "symbolic" in s.diagnostics[0].label


def test_callee_dim_names_do_not_capture_the_callers(check_source):
    """A block's `H` is its own: binding it to the caller's `H // 2` must not substitute twice."""
    s = check_source("""
        model Down() {
            forward(x: f32[B, C, H, W]) -> f32[B, C, H // 2, W // 2] { return max_pool2d(x, 2) }
        }
        model Rows() {
            forward(x: f32[B, C, H, W]) -> f32[B, C, H // 2, W] { return max_pool2d(x, (2, 1)) }
        }
        model M() {
            d1 = Down()
            d2 = Down()
            r = Rows()
            forward(x: f32[B, 3, H, W]) -> f32[B, 3, H // 8, W // 4] {
                return x |> d1 |> d2 |> r
            }
        }
    """)
    assert s.ok, s.diagnostics


def test_resnet18_with_symbolic_spatial_sizes(check_source):
    from conftest import ROOT

    blocks = (ROOT / "models" / "blocks.dnet").read_text()
    resnet = (ROOT / "models" / "resnet18.dnet").read_text()
    resnet = resnet.replace("f32[B, 3, 224, 224]", "f32[B, 3, H, W]")
    resnet = resnet.replace("f32[B, 512, 7, 7]", "f32[B, 512, (H + 31) // 32, _]")
    assert "f32[B, 3, H, W]" in resnet and "(H + 31) // 32" in resnet
    s = check_source(resnet, extra={"blocks.dnet": blocks})
    assert s.ok, s.diagnostics
    assert s.trainable_params == 11_689_512 and s.output_types == ["f32[B, 1000]"]
    conv1 = next(r for r in s.layers if r.path == "conv1")
    assert conv1.output == "f32[B, 64, (H + 1) // 2, (W + 1) // 2]"


def test_declared_dimension_expressions_keep_their_brackets(check_source):
    s = check_source("""
        model M(k: int = 3) {
            forward(x: f32[B, 8]) -> f32[B, (8 - 1) // k + 2] { return x }
        }
    """)
    assert codes(s) == ["E-ANNOTATION"]
    assert "f32[B, (8 - 1) // k + 2]" in s.diagnostics[0].message


def test_pow_takes_x_and_p_as_in_the_language_reference(check_source):
    s = check_source("""
        model M() { forward(x: f32[B, 4]) { return pow(x, p=2.0) + x ** 3 } }
    """)
    assert s.ok, s.diagnostics


def test_a_hyperparameter_size_divided_by_an_unknown_dimension_is_a_diagnostic(check_source):
    # found by `make fuzz-frontend` (a type's `W` mutated to `f32`): a size known in the
    # callee's names (`W - 1`) floor-divided by a dimension still unsolved recursed forever
    s = check_source("""
        model Block(out: int) {
            conv = Conv2d(out, kernel=1)
            forward(x: f32[B, C, H, W]) -> f32[B, out, H, (W - 1) // f32 + 1] { return conv(x) }
        }
        model Net() {
            b = Block(4)
            forward(x: f32[B, 3, 8, 8]) -> f32[B, 4, 8, 8] { return b(x) }
        }
    """)
    assert codes(s) == ["E-ANNOTATION"]
    assert "cannot solve 7 // f32 + 1 = 8" in s.diagnostics[0].label


def test_an_unsolved_dimension_divided_by_a_hyperparameter_is_a_diagnostic(check_source):
    # found by `make fuzz-frontend`: the mirror of the case above (an unsolved `W` in a
    # callee's input type floor-divided by its hyperparameter) recursed forever
    s = check_source("""
        model Block(s: int) {
            forward(x: f32[B, (W - 1) // s]) -> f32[B, (W - 1) // s] { return x }
        }
        model Net() {
            b = Block(2)
            forward(x: f32[B, 8]) -> f32[B, 8] { return b(x) }
        }
    """)
    assert codes(s) == ["E-SHAPE"]
    assert "cannot solve (W + 1) // 2 - 1 = 8" in s.diagnostics[0].label


def test_an_error_repeated_in_a_second_instance_does_not_cascade(check_source):
    # the second instance meets the same error (reported once) and so has no return either:
    # that is no new error
    s = check_source("""
        model Head(k: int) {
            fc = Linear(k)
            forward(x: f32[N, D]) { return fc(x) }
        }
        model Net() {
            a = Head(2)
            b = Head(3)
            forward(x: f32[B, D]) { return a(x) + b(x) }
        }
    """)
    assert codes(s) == ["E-SHAPE"], s.diagnostics


def test_an_explicit_none_is_the_default_where_the_default_is_none(check_source):
    from dualnet.ir.printer import print_ir

    texts = []
    for args in (("eps=none", "lo=none, hi=1.0"), ("", "hi=1.0")):
        summary = check_source(
            f"""
model Net() {{
    norm = RMSNorm({args[0]})
    forward(x: f32[B, 8]) -> f32[B, 8] {{
        return clamp(norm(x), {args[1]})
    }}
}}
"""
        )
        assert summary.ok, summary.diagnostics
        texts.append(print_ir(summary.instance))
    assert texts[0] == texts[1] and "eps=1.1920928955078125e-07" in texts[0]


def test_type_dimensions_index_tuples_take_mod_and_decided_max(check_source):
    s = check_source("""
        model M(padding: (int, int) = (1, 2)) {
            forward(x: f32[B, H, 8]) -> f32[B, H + 2 * padding[0], max(H, 1) % 4 + 1] {
                return pad(x, (padding[0], padding[0], 0, 0))[:, :, :max(H, 1) % 4 + 1]
            }
        }
    """)
    assert s.ok, s.diagnostics
    assert s.output_types == ["f32[B, H + 2, H - 4 * (H // 4) + 1]"]


def test_bad_type_dimensions_are_located_errors(check_source):
    cases = {
        "f32[B, padding]": "E-TYPE",  # a tuple, not a size
        "f32[B, padding[2]]": "E-VALUE",  # out of range
        "f32[B, H[0]]": "E-TYPE",  # not a tuple
        "f32[B, max(H, 7)]": "E-CONST",  # depends on H
        "f32[B, abs(H)]": "E-TYPE",  # not max or min
    }
    for annotation, code in cases.items():
        s = check_source(f"""
            model M(padding: (int, int) = (1, 2)) {{
                forward(x: f32[B, H]) -> {annotation} {{ return x }}
            }}
        """)
        assert code in codes(s), (annotation, s.diagnostics)


def test_max_of_symbolic_sizes_in_forward(check_source):
    ok = check_source("""
        model M() {
            forward(x: f32[B, T]) -> f32[B, 2 * T + 1] { return zeros([B, max(2 * T + 1, 3)]) }
        }
    """)
    assert ok.ok, ok.diagnostics
    bad = check_source("""
        model M() {
            forward(x: f32[B, T]) { return zeros([B, max(T, 3)]) }
        }
    """)
    assert codes(bad) == ["E-CONST"]


def test_optional_forward_arguments(check_source):
    s = check_source("""
        model Gate() {
            forward(x: f32[B, T], mask: bool[B, T] = none) -> f32[B, T] {
                return x if mask is none else where(mask, x, 0.0)
            }
        }
        model M() {
            g = Gate()
            forward(x: f32[B, T], m: bool[B, T]) -> (f32[B, T], f32[B, T]) {
                return g(x), g(x, m)
            }
        }
    """)
    assert s.ok, s.diagnostics
    graphs = s.instance.child("g").graphs
    assert [g.omitted for g in graphs] == [["mask"], []]
    assert [len(g.inputs) for g in graphs] == [1, 2]
    bad = {
        "forward(x: f32[N], m: f32[N] = 1.0) { return x }": "E-TYPE",  # default is not none
        "forward(x: f32[N] = none, m: f32[N]) { return x }": "E-ARGS",  # required after
        "forward(x: f32[N], m: f32[N] = none) { return x if x is x else x }": "E-TYPE",
    }
    for forward, code in bad.items():
        s = check_source(f"""
            model G() {{ {forward} }}
            model M() {{
                g = G()
                forward(x: f32[N]) {{ return g(x) }}
            }}
        """)
        assert code in codes(s), (forward, s.diagnostics)


def test_named_outputs(check_source):
    s = check_source("""
        model M() {
            forward(x: f32[B, 4]) -> (logits: f32[B, 4], probs: f32[B, 4]) {
                return x, softmax(x, -1)
            }
        }
    """)
    assert s.ok and s.output_types == ["logits: f32[B, 4]", "probs: f32[B, 4]"]
    assert s.graph.output_names == ("logits", "probs")
    bad = [
        "-> (a: f32[B, 4], f32[B, 4])",  # some named, some not
        "-> (a: f32[B, 4], a: f32[B, 4])",  # a name twice
        "-> (_a: f32[B, 4], b: f32[B, 4])",  # not a NamedTuple field
        "-> (a: f32[B, 4], class: f32[B, 4])",  # a Python keyword
    ]
    for returns in bad:
        s = check_source(f"model M() {{ forward(x: f32[B, 4]) {returns} {{ return x, x }} }}")
        assert codes(s) == ["E-SYNTAX"], (returns, s.diagnostics)
    s = check_source("model M(k: (a: int, b: int) = (1, 2)) { forward(x: f32[B]) { return x } }")
    assert codes(s) == ["E-SYNTAX"]  # only a forward's outputs are named
