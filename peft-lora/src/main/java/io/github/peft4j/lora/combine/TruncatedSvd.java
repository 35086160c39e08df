package io.github.peft4j.lora.combine;

import io.github.peft4j.PeftException;
import java.util.Arrays;
import org.ejml.data.DMatrixRMaj;
import org.ejml.dense.row.CommonOps_DDRM;
import org.ejml.dense.row.SingularOps_DDRM;
import org.ejml.dense.row.factory.DecompositionFactory_DDRM;
import org.ejml.interfaces.decomposition.QRDecomposition;
import org.ejml.interfaces.decomposition.SingularValueDecomposition_F64;

/**
 * The rank-{@code k} factors {@code B = U_k S_k} {@code (out, k)} and {@code A = V_kᵀ} {@code (k, in)} of an update, as
 * HF PEFT's {@code _svd_generalized_task_arithmetic_weighted_adapter} makes them (then optionally clamped to the
 * {@code svd_clamp} quantile of their values). DJL has no SVD; EJML (doubles, on the host) does the small dense parts.
 *
 * <p>{@link #ofProduct}: an update given as a product {@code B_c A_c} of rank at most {@code R} (the weighted sum of
 * LoRA updates is {@code [w_1 s_1 B_1 | …] [A_1; …]}) is factored without forming it: QR of {@code B_c} and of
 * {@code A_cᵀ}, SVD of the {@code R×R} core {@code R_B R_Aᵀ}. {@link #ofDense}: a pruned update is dense (full rank),
 * so its {@code out×in} matrix is decomposed directly: exact, but {@code O(out·in·min)} time and {@code out·in} doubles
 * of memory per layer (fine for the test models, slow for 4096² projections).
 */
final class TruncatedSvd {
    /** The factors, row-major: {@code b (out, k)}, {@code a (k, in)}. */
    record Factors(double[] b, double[] a, int out, int in, int rank) {}

    private TruncatedSvd() {}

    /**
     * @param bc {@code (out, r)} row-major
     * @param ac {@code (r, in)} row-major
     * @param out rows of the update
     * @param in columns of the update
     * @param r inner dimension
     * @param k the rank wanted (columns beyond the update's rank are zero)
     * @return the factors
     */
    static Factors ofProduct(double[] bc, double[] ac, int out, int in, int r, int k) {
        if (r > out || r > in) { // the QR route needs tall factors; such a tiny layer is cheap to form densely
            DMatrixRMaj d = new DMatrixRMaj(out, in);
            CommonOps_DDRM.mult(new DMatrixRMaj(out, r, true, bc), new DMatrixRMaj(r, in, true, ac), d);
            return ofDense(d.data, out, in, k);
        }
        DMatrixRMaj[] qb = qr(new DMatrixRMaj(out, r, true, bc));
        DMatrixRMaj at = new DMatrixRMaj(in, r);
        CommonOps_DDRM.transpose(new DMatrixRMaj(r, in, true, ac), at);
        DMatrixRMaj[] qa = qr(at);
        DMatrixRMaj core = new DMatrixRMaj(r, r);
        CommonOps_DDRM.multTransB(qb[1], qa[1], core); // R_B R_Aᵀ
        Svd s = svd(core);
        DMatrixRMaj u = new DMatrixRMaj(out, r);
        CommonOps_DDRM.mult(qb[0], s.u, u);
        DMatrixRMaj v = new DMatrixRMaj(in, r);
        CommonOps_DDRM.mult(qa[0], s.v, v);
        return factors(u, s.w, v, out, in, k);
    }

    /**
     * @param d {@code (out, in)} row-major
     * @param out rows
     * @param in columns
     * @param k the rank wanted, at most {@code min(out, in)}
     * @return the factors
     */
    static Factors ofDense(double[] d, int out, int in, int k) {
        if (k > Math.min(out, in)) {
            throw new PeftException("svd rank " + k + " exceeds the " + out + "x" + in + " update's " + Math.min(out, in)
                    + " singular values");
        }
        Svd s = svd(new DMatrixRMaj(out, in, true, d));
        return factors(s.u, s.w, s.v, out, in, k);
    }

    /** Clamps both factors to {@code [-q, q]} with {@code q} the {@code quantile} of all their values (torch.quantile, linear). */
    static Factors clamp(Factors f, double quantile) {
        double[] all = new double[f.b.length + f.a.length];
        System.arraycopy(f.b, 0, all, 0, f.b.length);
        System.arraycopy(f.a, 0, all, f.b.length, f.a.length);
        Arrays.sort(all);
        double pos = quantile * (all.length - 1);
        int lo = (int) Math.floor(pos);
        int hi = Math.min(all.length - 1, lo + 1);
        double hiVal = all[lo] + (all[hi] - all[lo]) * (pos - lo);
        double loVal = -hiVal;
        double[] b = f.b.clone();
        double[] a = f.a.clone();
        for (int i = 0; i < b.length; i++) {
            b[i] = Math.min(Math.max(b[i], loVal), hiVal);
        }
        for (int i = 0; i < a.length; i++) {
            a[i] = Math.min(Math.max(a[i], loVal), hiVal);
        }
        return new Factors(b, a, f.out, f.in, f.rank);
    }

    private record Svd(DMatrixRMaj u, double[] w, DMatrixRMaj v) {}

    /** Thin SVD with singular values in descending order. */
    private static Svd svd(DMatrixRMaj m) {
        SingularValueDecomposition_F64<DMatrixRMaj> svd = DecompositionFactory_DDRM.svd(m.numRows, m.numCols, true, true, true);
        if (!svd.decompose(m.copy())) {
            throw new PeftException("SVD of a " + m.numRows + "x" + m.numCols + " update did not converge");
        }
        DMatrixRMaj u = svd.getU(null, false);
        DMatrixRMaj v = svd.getV(null, false);
        DMatrixRMaj w = svd.getW(null);
        SingularOps_DDRM.descendingOrder(u, false, w, v, false);
        int n = Math.min(w.numRows, w.numCols);
        double[] s = new double[n];
        for (int i = 0; i < n; i++) {
            s[i] = w.get(i, i);
        }
        return new Svd(u, s, v);
    }

    /** @return {Q (m, n), R (n, n)} of a tall matrix */
    private static DMatrixRMaj[] qr(DMatrixRMaj m) {
        QRDecomposition<DMatrixRMaj> qr = DecompositionFactory_DDRM.qr(m.numRows, m.numCols);
        if (!qr.decompose(m.copy())) {
            throw new PeftException("QR of a " + m.numRows + "x" + m.numCols + " factor failed");
        }
        return new DMatrixRMaj[] {qr.getQ(null, true), qr.getR(null, true)};
    }

    /** {@code B = U[:, :k] diag(S[:k])}, {@code A = V[:, :k]ᵀ}; zero beyond the available singular vectors. */
    private static Factors factors(DMatrixRMaj u, double[] s, DMatrixRMaj v, int out, int in, int k) {
        int avail = Math.min(k, s.length);
        double[] b = new double[out * k];
        double[] a = new double[k * in];
        for (int j = 0; j < avail; j++) {
            for (int i = 0; i < out; i++) {
                b[i * k + j] = u.get(i, j) * s[j];
            }
            for (int i = 0; i < in; i++) {
                a[j * in + i] = v.get(i, j);
            }
        }
        return new Factors(b, a, out, in, k);
    }
}
