function m = qcanet_evaluate(pred, gt)
%QCANET_EVALUATE  IoU, SEG, MUCov, CTC SEG, F1 and AP of predicted labels against ground truth.
%   m = qcanet_evaluate(pred, gt)   (both [X Y Z], any integer type) returns a struct with
%   the fields of the C API's QcaMetrics: iou, seg, mucov (as the QCANet authors' evaluation
%   code computes them), seg_ctc, f1, n_gt, n_pred, n_matched, precision, recall, and the
%   detection scores at IoU thresholds 0.5, 0.6, 0.7, 0.8, 0.9 as 1x5 vectors:
%     m.match_threshold, m.match_tp, m.match_fp, m.match_fn, m.match_precision,
%     m.match_recall, m.match_f1, m.ap (TP / (TP + FP + FN)), m.mean_matched_iou,
%     m.panoptic_quality
%   plus m.ap50, m.ap70, m.ap90 = m.ap(1), m.ap(3), m.ap(5).
if ~isequal(size(pred), size(gt)), error('qcanet:size', 'pred and gt differ in size'); end
qcanet_lib('load');
out = libstruct('QcaMetrics');
qcanet_check(calllib('qcanet', 'qca_evaluate', uint32(pred), uint32(gt), qcanet_dims(pred), out), 'evaluation');
s = struct(out);
m = struct();
for f = fieldnames(s)'
    m.(f{1}) = double(s.(f{1}));
end
if numel(m.ap) ~= 5 || abs(m.match_threshold(1) - 0.5) > 1e-12 || abs(m.match_threshold(5) - 0.9) > 1e-12
    error('qcanet:abi', 'QcaMetrics was not read as 5 IoU thresholds 0.5 .. 0.9 (another C ABI?)');
end
m.ap50 = m.ap(1);
m.ap70 = m.ap(3);
m.ap90 = m.ap(5);
end
