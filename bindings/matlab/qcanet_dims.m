function d = qcanet_dims(vol)
%QCANET_DIMS  C API dims (z, y, x) of a MATLAB volume of size [X Y Z].
%   A MATLAB array is column-major: element (x, y, z) lies at x + X*(y + Y*z),
%   exactly where the C API's [z][y][x] order puts it. So the memory is passed
%   as it is (no copy, no permute) and only the order of the sizes is reversed.
sz = size(vol);
if numel(sz) == 2, sz(3) = 1; end
if numel(sz) ~= 3, error('qcanet:dims', 'expected a 3-D volume [X Y Z], got %d dimensions', numel(sz)); end
d = uint64(fliplr(sz));
end
