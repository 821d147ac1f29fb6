function m = qcanet_evaluate(pred, gt)
%QCANET_EVALUATE  IoU, SEG, MUCov, CTC SEG and F1 of predicted labels against ground truth.
%   m = qcanet_evaluate(pred, gt)   (both [X Y Z], any integer type) returns a struct.
if ~isequal(size(pred), size(gt)), error('qcanet:size', 'pred and gt differ in size'); end
qcanet_lib('load');
out = libstruct('QcaMetrics');
qcanet_check(calllib('qcanet', 'qca_evaluate', uint32(pred), uint32(gt), qcanet_dims(pred), out), 'evaluation');
m = struct(out);
end
