"""The autodiff checks (LANGUAGE.md §9): every trainable parameter reaches an output through
differentiable ops; cuts are reported with the op that made them."""

from conftest import codes


def test_clean_model_passes(check_source):
    s = check_source("""
        model M() {
            fc = Linear(4)
            forward(x: f32[B, 4]) { return softmax(fc(x)) }
        }
    """)
    assert s.ok


def test_argmax_cuts_the_path(check_source):
    s = check_source("""
        model M() {
            fc = Linear(4)
            emb = Embedding(4, 3)
            forward(x: f32[B, 4]) { return emb(argmax(fc(x), 1)) }
        }
    """)
    assert codes(s) == ["E-GRAD"]
    d = s.diagnostics[0]
    assert "`fc`" in d.message and "argmax" in d.label
    assert d.span.line == 5


def test_cast_to_integer_is_a_dtype_cut(check_source):
    s = check_source("""
        model M() {
            fc = Linear(4)
            forward(x: f32[B, 4]) { return cast(cast(fc(x), "i64"), "f32") }
        }
    """)
    assert codes(s) == ["E-GRAD-DTYPE"]
    assert "i64" in s.diagnostics[0].label


def test_stop_gradient_is_an_intended_cut(check_source):
    s = check_source("""
        model M() {
            fc = Linear(4)
            forward(x: f32[B, 4]) { return x + stop_gradient(fc(x)) }
        }
    """)
    assert s.ok, s.diagnostics


def test_layer_never_called(check_source):
    s = check_source("""
        model M() {
            fc = Linear(4)
            spare = Linear(4)
            forward(x: f32[B, 4]) { return fc(x) }
        }
    """)
    assert codes(s) == ["E-UNUSED"]
    assert "spare" in s.diagnostics[0].message and s.diagnostics[0].span.line == 4


def test_parameter_never_read(check_source):
    s = check_source("""
        model Inner() {
            spare = Parameter([4])
            kept = Buffer([4])
            forward(x: f32[B, 4]) { return x * 2.0 }
        }
        model M() {
            inner = Inner()
            forward(x: f32[B, 4]) { return inner(x) }
        }
    """)
    assert codes(s) == ["E-UNUSED"]
    assert "`inner.spare` is declared but never read" in s.diagnostics[0].message
    assert s.diagnostics[0].span.line == 3


def test_result_never_used(check_source):
    s = check_source("""
        model M() {
            fc = Linear(4)
            g = Linear(4)
            forward(x: f32[B, 4]) {
                unused = g(x)
                return fc(x)
            }
        }
    """)
    assert codes(s) == ["E-UNUSED"] and "`g`" in s.diagnostics[0].message


def test_paths_through_submodels_and_comparisons(check_source):
    s = check_source("""
        model Gate() {
            fc = Linear(4)
            forward(x: f32[B, 4]) { return fc(x) > 0.0 }
        }
        model M() {
            gate = Gate()
            out = Linear(4)
            forward(x: f32[B, 4]) { return where(gate(x), out(x), x) }
        }
    """)
    assert codes(s) == ["E-GRAD"]
    assert "gate.fc" in s.diagnostics[0].message and "gt" in s.diagnostics[0].label


def test_integer_outputs_do_not_count_as_gradient_paths(check_source):
    s = check_source("""
        model M() {
            fc = Linear(4)
            forward(x: f32[B, 4]) { return argmax(fc(x), 1), x }
        }
    """)
    assert codes(s) == ["E-GRAD"]


def test_buffers_and_parameterless_layers_need_no_gradient(check_source):
    s = check_source("""
        model M() {
            bn = BatchNorm()
            drop = Dropout(0.1)
            forward(x: f32[B, 3, 4, 4]) { return drop(bn(x)) }
        }
    """)
    assert s.ok and s.buffers == 6 and s.trainable_params == 6
